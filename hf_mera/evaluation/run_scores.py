"""`RunScores`: every score of one continual-learning run (one method, one training order)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from .relative_gain import StageOne, backward_relative_gain, forward_relative_gain


def _score_table(value: Any, where: str) -> dict[str, dict[str, float]]:
    """Validate and copy a modality → task → score mapping."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must map modality → task → score, got {type(value).__name__}.")
    table: dict[str, dict[str, float]] = {}
    for modality, tasks in value.items():
        if not isinstance(tasks, Mapping):
            raise ValueError(f"{where}[{modality!r}] must map task → score, got {type(tasks).__name__}.")
        table[str(modality)] = {}
        for task, score in tasks.items():
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise ValueError(f"{where}[{modality!r}][{task!r}] must be a number, got {score!r}.")
            table[str(modality)][str(task)] = float(score)
    return table


@dataclass
class RunScores:
    """Scores of one run, as in one method's block of the paper's Tables 11 / 12.

    Args:
        method (`str`): method name as it should appear in tables ("MERA (10%)").
        order (`list[str]`): modalities in training order; stage i adds `order[i-1]`.
        stages (`list[dict[str, dict[str, float]]]`): `stages[i-1][modality][task]`, the score on that
            task after stage i, for the modalities evaluated then (usually those seen so far). Captioning
            scores are CIDEr ×100, QA scores accuracies in [0, 1], as the paper's raw tables print them.
        expert_scores (`dict[str, dict[str, float]]`): modality → task → score of the expert trained on
            that modality alone (S^sup); its tasks define each modality's K datasets.
        order_name (`str`, *optional*): label of the order in tables ("sequential"); defaults to the
            modalities joined by " → ".
        cross_modal (`dict[str, float]`): benchmark → accuracy in [0, 1] after the last stage (Table 3).
        metadata (`dict`): anything else worth keeping with the numbers (judge model, replay ratio, seed).
    """

    method: str
    order: list[str]
    stages: list[dict[str, dict[str, float]]] = field(default_factory=list)
    expert_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    order_name: str | None = None
    cross_modal: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"method must be a non-empty str, got {self.method!r}.")
        if isinstance(self.order, str) or not self.order:
            raise ValueError(f"order must be a non-empty list of modality names, got {self.order!r}.")
        self.order = [str(m) for m in self.order]
        if len(set(self.order)) != len(self.order):
            raise ValueError(f"order repeats a modality: {self.order}.")
        if len(self.stages) > len(self.order):
            raise ValueError(
                f"stages has {len(self.stages)} entries but order only {len(self.order)} modalities."
            )
        self.stages = [_score_table(s, f"stages[{i}]") for i, s in enumerate(self.stages)]
        self.expert_scores = _score_table(self.expert_scores, "expert_scores")
        for name, score in self.cross_modal.items():
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise ValueError(f"cross_modal[{name!r}] must be a number, got {score!r}.")
        self.cross_modal = {str(k): float(v) for k, v in self.cross_modal.items()}
        if self.order_name is None:
            self.order_name = " → ".join(self.order)

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def record(self, stage: int, modality: str, task: str, score: float) -> None:
        """Store one score measured after `stage` (counted from 1); adds the stage when it is the next one."""
        if not 1 <= stage <= len(self.order):
            raise ValueError(f"stage must be in 1..{len(self.order)}, got {stage}.")
        if stage > len(self.stages) + 1:
            raise ValueError(f"stage {stage} recorded before stage {len(self.stages) + 1}.")
        if stage == len(self.stages) + 1:
            self.stages.append({})
        self.stages[stage - 1].setdefault(modality, {})[task] = float(score)

    def has_gain(self, stage: int, modality: str) -> bool:
        """Whether stage `stage` holds every expert task of `modality`, i.e. its Relative Gain is defined."""
        if not 1 <= stage <= len(self.stages) or modality not in self.expert_scores:
            return False
        scores = self.stages[stage - 1].get(modality, {})
        return all(task in scores for task in self.expert_scores[modality])

    def backward_relative_gains(self, stage_one: StageOne = "relative_gain") -> list[float]:
        """Bw Relative Gain of every recorded stage (see `backward_relative_gain`)."""
        return [
            backward_relative_gain(scores, self.expert_scores, self.order, i, stage_one)
            for i, scores in enumerate(self.stages, start=1)
        ]

    def forward_relative_gains(self, stage_one: StageOne = "relative_gain") -> list[float | None]:
        """Fw Relative Gain of every recorded stage; `None` where the new modality lacks a task's score."""
        return [
            forward_relative_gain(scores, self.expert_scores, self.order, i, stage_one)
            if self.has_gain(i, self.order[i - 1]) or (i == 1 and stage_one == "100")
            else None
            for i, scores in enumerate(self.stages, start=1)
        ]

    # ---- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunScores:
        known = {"method", "order", "stages", "expert_scores", "order_name", "cross_modal", "metadata"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown RunScores fields: {sorted(unknown)}.")
        return cls(**{k: data[k] for k in known if k in data})

    def to_json(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> RunScores:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


__all__ = ["RunScores"]
