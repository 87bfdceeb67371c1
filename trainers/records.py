"""What a method's run produced: per-stage scores and checkpoints, and its Table 6 costs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StageRecord:
    """What one stage produced: scores per seen modality and task, and where its checkpoint is."""

    index: int
    modality: str
    scores: dict[str, dict[str, float]]
    checkpoint: str
    seconds: float = 0.0


@dataclass
class MethodRecord:
    """One method over the curriculum. `reference` marks the individually trained experts, whose
    scores are the Relative Gain's S_sup for every other method of the run."""

    name: str
    type: str
    order: list[str]
    stages: list[StageRecord] = field(default_factory=list)
    cross_modal_accuracy: float | None = None
    train_seconds: float = 0.0
    peak_memory_bytes: int | None = None
    memory_source: str | None = None
    infer_peak_memory_bytes: int | None = None
    latency_per_token_ms: float | None = None
    reference: bool = False


__all__ = ["MethodRecord", "StageRecord"]
