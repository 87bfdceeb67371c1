"""Task-level evaluation: captions are scored with CIDEr, questions with accuracy (paper section 5.1)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .cider import compute_cider
from .generation import generate_predictions
from .judges import QAJudge
from .qa import qa_accuracy
from .vqa import vqa_accuracy

# task → its default metric; "cross" (multi-modality questions such as MCUB-4, Table 3) is scored like
# QA. A dataset may choose another (`metric=`): OK-VQA's adapter says "vqa_accuracy".
TASK_METRICS = {"caption": "cider", "qa": "accuracy", "cross": "accuracy"}
METRICS = ("cider", "accuracy", "vqa_accuracy")


@dataclass
class TaskResult:
    """Score of one task.

    Args:
        task (`str`): "caption", "qa" or "cross".
        metric (`str`): "cider" (×100), "accuracy" or "vqa_accuracy" (both in [0, 1]).
        score (`float`): the number that goes into `RunScores`.
        predictions (`list[str]`): the generated answers, in dataset order.
        per_item (`list`): per-item CIDEr or correctness.
        judge_name (`str` or `None`): the QA judge, for accuracy.
    """

    task: str
    metric: str
    score: float
    predictions: list[str] = field(default_factory=list)
    per_item: list = field(default_factory=list)
    judge_name: str | None = None


def score_predictions(
    task: str,
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    questions: Sequence[str] | None = None,
    judge: QAJudge | None = None,
    metric: str | None = None,
) -> TaskResult:
    """Score predictions of `task` with `metric`, by default the task's (`TASK_METRICS`); no model involved.

    "vqa_accuracy" reads `references` as each item's annotator answers and ignores `judge`.

    Raises:
        `ValueError`: unknown task or metric, or inputs the metric rejects (see `compute_cider`,
            `qa_accuracy`, `vqa_accuracy`).
    """
    if task not in TASK_METRICS:
        raise ValueError(f"Unknown task {task!r}; known tasks: {sorted(TASK_METRICS)}.")
    metric = metric or TASK_METRICS[task]
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r} for task {task!r}; known metrics: {', '.join(METRICS)}.")
    if metric == "cider":
        result = compute_cider(predictions, references)
        return TaskResult(task, "cider", result.score, list(predictions), result.per_item)
    if metric == "vqa_accuracy":
        vqa = vqa_accuracy(predictions, references)
        return TaskResult(task, "vqa_accuracy", vqa.accuracy, list(predictions), vqa.per_item)
    questions = list(questions) if questions is not None else [""] * len(predictions)
    result = qa_accuracy(predictions, references, questions, judge)
    return TaskResult(
        task, "accuracy", result.accuracy, list(predictions), result.per_item, result.judge_name
    )


def evaluate_task(
    model,
    processor,
    dataset,
    task: str,
    judge: QAJudge | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 32,
    progress: bool = True,
    feature_lookup: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    metric: str | None = None,
) -> TaskResult:
    """Generate answers for the rows of `dataset` whose `task` column equals `task`, then score them.

    Args:
        model, processor: see `generate_predictions`.
        dataset (`datasets.Dataset` or `list[dict]`): rows as in docs/CONTRACTS.md (`task`, `messages`,
            `media`, `references`, `question`). Rows of other tasks are skipped.
        task (`str`): "caption" (CIDEr ×100) or "qa" / "cross" (accuracy judged by `judge`).
        judge (`QAJudge`, *optional*): QA judge, `ExactMatchJudge()` by default.
        batch_size, max_new_tokens, progress, feature_lookup: passed to `generate_predictions`.
        metric (`str`, *optional*): see `score_predictions` (default: the task's).

    Returns:
        [`TaskResult`]: `.score` is the number for `RunScores`; predictions are kept for inspection.
    """
    if task not in TASK_METRICS:
        raise ValueError(f"Unknown task {task!r}; known tasks: {sorted(TASK_METRICS)}.")
    if metric is not None and metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r} for task {task!r}; known metrics: {', '.join(METRICS)}.")
    rows = [dataset[i] for i in range(len(dataset))]
    rows = [row for row in rows if row.get("task", task) == task]
    if not rows:
        raise ValueError(f"dataset has no rows with task {task!r}.")
    predictions = generate_predictions(
        model,
        processor,
        rows,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        progress=progress,
        feature_lookup=feature_lookup,
    )
    return score_predictions(
        task,
        predictions,
        [row["references"] for row in rows],
        [row.get("question", "") for row in rows],
        judge,
        metric,
    )


def evaluate_tasks(model, processor, dataset, **kwargs) -> dict[str, TaskResult]:
    """`evaluate_task` for every task present in `dataset` (e.g. one modality's caption + QA test set)."""
    tasks = list(dict.fromkeys(dataset[i]["task"] for i in range(len(dataset))))
    return {task: evaluate_task(model, processor, dataset, task, **kwargs) for task in tasks}


__all__ = ["METRICS", "TASK_METRICS", "TaskResult", "evaluate_task", "evaluate_tasks", "score_predictions"]
