"""Answer normalisation, exact match and judged QA accuracy."""

import pytest

from hf_mera.evaluation import (
    AccuracyResult,
    ExactMatchJudge,
    Verdict,
    exact_match,
    normalize_answer,
    qa_accuracy,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Red Square.", "red square"),
        ("  an   apple ", "apple"),
        ("Two", "2"),
        ("twenty dogs", "20 dogs"),
        ("none", "0"),
        ("3.5 meters", "3.5 meters"),
        ("1,000", "1000"),
        ("black-and-white", "black and white"),
        ("don't", "dont"),
        ("dog's bowl", "dogs bowl"),
        ("“Yes!”", "yes"),
        ("A", "a"),  # an answer that is only an article keeps it (multiple-choice option "A")
        ("the", "the"),
        ("ﬁne", "fine"),  # NFKC folds the ligature
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_any_reference_after_normalisation():
    assert exact_match("Two.", ["three", "2"])
    assert exact_match("the cat", ["Cat"])
    assert not exact_match("a red square", ["red"])  # strict by default: verbose answers do not match
    assert exact_match("A", ["a"]) and not exact_match("B", ["A"]) and not exact_match("", ["A"])


def test_exact_match_contains_accepts_whole_words_only():
    assert exact_match("it is a red square", ["red"], contains=True)
    assert exact_match("there are two dogs", ["2"], contains=True)
    assert not exact_match("it is reddish", ["red"], contains=True)
    assert not exact_match("", ["..."], contains=True)  # a blank normalised reference never matches
    assert not exact_match("", [""])


@pytest.mark.parametrize("references", [[], "red"])
def test_exact_match_rejects_empty_or_string_references(references):
    with pytest.raises(ValueError, match="references"):
        exact_match("red", references)


def test_qa_accuracy_with_default_exact_match_judge():
    result = qa_accuracy(
        predictions=["Red.", "three", "a blue circle", "Yes"],
        references=[["red"], ["3", "three"], ["blue"], ["no"]],
        questions=["colour?", "how many?", "colour?", "is it?"],
    )
    assert isinstance(result, AccuracyResult)
    assert result.per_item == [True, True, False, False]
    assert result.accuracy == 0.5
    assert result.judge_name == "exact_match"
    assert result.mean_score is None
    assert [v.correct for v in result.verdicts] == result.per_item


class CountingJudge:
    """Accepts only the answer "right"; counts calls to show that references are tried until one matches."""

    name = "counting"

    def __init__(self):
        self.calls = []

    def judge(self, question, answer, prediction):
        self.calls.append(answer)
        correct = answer == "right"
        return Verdict(correct=correct, score=5.0 if correct else 1.0, raw=str(correct))


def test_qa_accuracy_tries_distinct_references_until_one_is_accepted():
    judge = CountingJudge()
    result = qa_accuracy(["x", "y"], [["wrong", "wrong", "right", "later"], ["wrong"]], ["q1", "q2"], judge)
    assert judge.calls == ["wrong", "right", "wrong"]  # duplicate skipped, search stopped at the match
    assert result.per_item == [True, False]
    assert result.judge_name == "counting"
    assert result.mean_score == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("predictions", "references", "questions", "message"),
    [
        (["a"], [["a"], ["b"]], ["q", "q"], "differ in length"),
        ([], [], [], "empty"),
        (["a", "b"], [["a"], []], ["q", "q"], r"references\[1\]"),
    ],
)
def test_qa_accuracy_rejects_bad_input(predictions, references, questions, message):
    with pytest.raises(ValueError, match=message):
        qa_accuracy(predictions, references, questions)


def test_exact_match_judge_contains_mode_has_its_own_name():
    judge = ExactMatchJudge(contains=True)
    assert judge.name == "exact_match_contains"
    assert judge.judge("colour?", "red", "it is red").correct
