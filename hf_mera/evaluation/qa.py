"""Question-answering accuracy: the fraction of predictions a `QAJudge` accepts.

The paper (appendix C.2) judges QA predictions with GPT-4o mini (`OpenAIJudge`); offline and in tests
the default is `ExactMatchJudge`, i.e. `exact_match` after `normalize_answer`.

An item is correct when *any* of its references is accepted: right for sets whose references are
alternative forms of one answer (MSVD-QA, Cap3D-QA, the embedded benchmark), wrong for sets whose
references are ten annotators' answers, where one stray annotator would make a guess correct. Those
(OK-VQA) are scored with `hf_mera.evaluation.vqa.vqa_accuracy`; each paper dataset's adapter says
which metric its test split uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .judges import ExactMatchJudge, QAJudge, Verdict


@dataclass
class AccuracyResult:
    """QA accuracy over a test set.

    Args:
        accuracy (`float`): fraction of items judged correct, in [0, 1] (Table 11 prints it so; Table 3 ×100).
        per_item (`list[bool]`): whether each prediction was judged correct.
        judge_name (`str`): the judge that decided (e.g. "exact_match" or the judge model, "gpt-4o-mini").
        verdicts (`list[Verdict]`): the deciding verdict of each item (its score and raw judge output).
        mean_score (`float` or `None`): mean of the judge's 0–5 scores where it gave one.
    """

    accuracy: float
    per_item: list[bool]
    judge_name: str
    verdicts: list[Verdict] = field(default_factory=list)
    mean_score: float | None = None


def qa_accuracy(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    questions: Sequence[str],
    judge: QAJudge | None = None,
) -> AccuracyResult:
    """Accuracy of `predictions`: the fraction that `judge` accepts.

    An item is correct when the judge accepts the prediction against *any* of its references. The
    distinct references are tried in order and the first acceptance stops the search, so a judge that
    calls an API makes one request per item when the first reference matches, and at most one per
    distinct reference otherwise.

    Args:
        predictions (`list[str]`): one answer per item.
        references (`list[list[str]]`): accepted answers per item.
        questions (`list[str]`): the question of each item (shown to the judge).
        judge (`QAJudge`, *optional*): defaults to `ExactMatchJudge()`.

    Raises:
        `ValueError`: the three lists differ in length, are empty, or an item has no references.
    """
    judge = judge if judge is not None else ExactMatchJudge()
    if not (len(predictions) == len(references) == len(questions)):
        raise ValueError(
            f"predictions, references and questions differ in length: {len(predictions)}, "
            f"{len(references)}, {len(questions)}."
        )
    if not predictions:
        raise ValueError("predictions is empty: accuracy needs at least one item.")
    verdicts = []
    for index, (prediction, refs, question) in enumerate(zip(predictions, references, questions)):
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references[{index}] must be a non-empty list of str, got {refs!r}.")
        verdict = None
        for reference in dict.fromkeys(refs):  # distinct, in order
            verdict = judge.judge(question, reference, prediction)
            if verdict.correct:
                break
        verdicts.append(verdict)
    per_item = [v.correct for v in verdicts]
    scores = [v.score for v in verdicts if v.score is not None]
    return AccuracyResult(
        accuracy=sum(per_item) / len(per_item),
        per_item=per_item,
        judge_name=judge.name,
        verdicts=verdicts,
        mean_score=sum(scores) / len(scores) if scores else None,
    )


__all__ = ["AccuracyResult", "qa_accuracy"]
