"""VQA accuracy against hand-computed values and the official evaluation script's rules."""

from __future__ import annotations

import itertools

import pytest

from hf_mera.evaluation import score_predictions
from hf_mera.evaluation.vqa import normalize_vqa_answer, vqa_accuracy, vqa_item_accuracy


def ten(answer: str, matching: int, other: str = "cat") -> list[str]:
    return [answer] * matching + [other] * (10 - matching)


@pytest.mark.parametrize(
    ("matching", "expected"),
    # By hand: m of 10 match; leaving out a matching annotator leaves m-1, another one leaves m.
    # m=1: (1·0 + 9·1/3)/10 = 0.3; m=2: (2·1/3 + 8·2/3)/10 = 0.6; m=3: (3·2/3 + 7·1)/10 = 0.9; m>=4: 1.
    [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)],
)
def test_item_accuracy_is_the_ten_choose_nine_average(matching, expected):
    assert vqa_item_accuracy("dog", ten("dog", matching)) == pytest.approx(expected)


def test_item_accuracy_equals_brute_force_over_the_nine_annotator_subsets():
    answers = ["dog", "dog", "puppy", "dog", "cat", "puppy", "dog", "pet", "puppy", "animal"]
    for prediction in ("dog", "puppy", "pet", "horse"):
        subsets = list(itertools.combinations(range(10), 9))
        assert len(subsets) == 10
        brute = sum(min(sum(answers[i] == prediction for i in s) / 3, 1) for s in subsets) / 10
        assert vqa_item_accuracy(prediction, answers) == pytest.approx(brute)
    # "dog" is given by 4 annotators: every subset of nine keeps at least 3 of them.
    assert vqa_item_accuracy("dog", answers) == 1.0
    assert vqa_item_accuracy("puppy", answers) == pytest.approx(0.9)
    assert vqa_item_accuracy("pet", answers) == pytest.approx(0.3)


def test_not_any_reference_a_single_stray_annotator_gives_0_3():
    # The old rule ("correct if any reference matches") gave this item 1.0.
    answers = ["surfing"] * 9 + ["swimming"]
    assert vqa_item_accuracy("swimming", answers) == pytest.approx(0.3)
    result = vqa_accuracy(["surfing", "swimming", "skiing"], [answers] * 3)
    assert result.per_item == pytest.approx([1.0, 0.3, 0.0])
    assert result.accuracy == pytest.approx(1.3 / 3)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Dog.", "dog"),  # article dropped, final period removed, lower case
        ("two", "2"),  # number words up to ten
        ("none", "0"),
        ("eleven", "eleven"),  # beyond ten: the VQA script leaves it
        ("3.5", "3.5"),  # a decimal point stays
        ("1,000", "1000"),  # a thousands separator is removed
        ("black-and-white", "black and white"),  # punctuation between words becomes a space
        ("yes !", "yes"),  # punctuation touching a space is removed
        ("dont", "don't"),  # contractions get their apostrophe
        ("don't", "don't"),
        ("dog's", "dog's"),  # the apostrophe is not punctuation for VQA
        ("  a\tred\nbus ", "red bus"),
    ],
)
def test_normalization_follows_the_vqa_script(raw, normalized):
    assert normalize_vqa_answer(raw) == normalized


def test_normalization_applies_to_predictions_and_answers():
    assert vqa_item_accuracy("The dog.", ten("dog", 10)) == 1.0
    assert vqa_item_accuracy("2", ten("two", 3)) == pytest.approx(0.9)


def test_errors_name_the_item():
    with pytest.raises(ValueError, match="item 1: VQA accuracy needs the annotators' answers"):
        vqa_accuracy(["a", "b"], [ten("a", 3), ["b"]])
    with pytest.raises(ValueError, match="differ in length"):
        vqa_accuracy(["a"], [])
    with pytest.raises(ValueError, match="empty"):
        vqa_accuracy([], [])


def test_score_predictions_dispatches_on_the_metric():
    refs = [ten("dog", 1)]
    assert score_predictions("qa", ["dog"], refs).score == 1.0  # judge: any reference
    result = score_predictions("qa", ["dog"], refs, metric="vqa_accuracy")
    assert result.metric == "vqa_accuracy" and result.score == pytest.approx(0.3)
    with pytest.raises(ValueError, match="Unknown metric 'bleu'"):
        score_predictions("qa", ["dog"], refs, metric="bleu")
