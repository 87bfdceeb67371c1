"""Checks that the embedded benchmark tests perception, not language priors.

`text_only_baseline` fits the best predictor that sees only the question text (the majority answer
per question text, else per question type) on the train split and scores it on the test split. On
a well-balanced benchmark it scores at chance, 1 / #answers, for every question type.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .benchmark import EmbeddedBenchmark


@dataclass(frozen=True)
class TextOnlyScore:
    """Accuracy of the text-only predictor on one question type."""

    question_type: str
    accuracy: float
    chance: float
    n: int


def _majority(counter: Counter) -> str:
    # Ties broken alphabetically: deterministic, and not in the answer's favour.
    best = max(counter.values())
    return min(answer for answer, count in counter.items() if count == best)


def fit_text_only(questions: Sequence[str], types: Sequence[str], answers: Sequence[str]):
    """The majority answer per question text, falling back to the majority of its question type."""
    by_text: dict[str, Counter] = defaultdict(Counter)
    by_type: dict[str, Counter] = defaultdict(Counter)
    for question, qtype, answer in zip(questions, types, answers):
        by_text[question][answer] += 1
        by_type[qtype][answer] += 1

    def predict(question: str, qtype: str) -> str:
        if question in by_text:
            return _majority(by_text[question])
        return _majority(by_type[qtype]) if qtype in by_type else ""

    return predict


def score_text_only(
    train: tuple[Sequence[str], Sequence[str], Sequence[str]],
    test: tuple[Sequence[str], Sequence[str], Sequence[str]],
    answer_sets: dict[str, Sequence[str]],
) -> dict[str, TextOnlyScore]:
    """Fits on `train` and scores on `test`, both `(questions, question_types, answers)`."""
    predict = fit_text_only(*train)
    right: Counter = Counter()
    total: Counter = Counter()
    for question, qtype, answer in zip(*test):
        total[qtype] += 1
        right[qtype] += predict(question, qtype) == answer
    return {
        qtype: TextOnlyScore(qtype, right[qtype] / total[qtype], 1.0 / len(answer_sets[qtype]), total[qtype])
        for qtype in sorted(total)
    }


def _columns(benchmark: EmbeddedBenchmark, modality: str, task: str, split: str) -> tuple[list, list, list]:
    if modality == "cross":
        dataset = benchmark.cross_modal_test()
    else:
        dataset = benchmark.dataset(modality, task, split)
    types = [m["question_type"] for m in benchmark.metadata(modality, task, split)]
    answers = [messages[-1]["content"] for messages in dataset["messages"]]
    return list(dataset["question"]), types, answers


def text_only_baseline(benchmark: EmbeddedBenchmark, modality: str) -> dict[str, TextOnlyScore]:
    """Text-only accuracy per question type on `modality`'s QA test set (train -> test).

    The cross-modal set (`modality="cross"`) has no train split: it is scored by two-fold cross-fitting
    (fit on the even rows, score the odd ones, and the reverse).
    """
    answer_sets = benchmark.question_types(modality)
    if modality != "cross":
        return score_text_only(
            _columns(benchmark, modality, "qa", "train"),
            _columns(benchmark, modality, "qa", "test"),
            answer_sets,
        )
    columns = _columns(benchmark, "cross", "cross", "test")
    halves = [tuple(c[k::2] for c in columns) for k in (0, 1)]
    scores = [score_text_only(halves[k], halves[1 - k], answer_sets) for k in (0, 1)]
    merged = {}
    for qtype in sorted(set(scores[0]) | set(scores[1])):
        parts = [s[qtype] for s in scores if qtype in s]
        n = sum(p.n for p in parts)
        accuracy = sum(p.accuracy * p.n for p in parts) / n
        merged[qtype] = TextOnlyScore(qtype, accuracy, parts[0].chance, n)
    return merged
