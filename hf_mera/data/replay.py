"""Replay sampling: r % of each modality's training data, stratified over its tasks.

The paper uses replay in two places (section 4.2, footnote 2, appendix C.3):

- the **Replay** baseline trains stage i on D_i plus R_i sampled from D_1 ... D_{i-1}
  (`replay_for_baseline`);
- MERA's **realign** step trains the connectors on R_i sampled from D_1 ... D_i, the current
  modality included (`replay_for_realign`).

Per modality and task (caption, QA) the sample has `round(ratio * n)` rows (half rounded up), at
least one when `ratio > 0` and `n > 0`: at 1 % a small task still contributes. Each (seed,
modality, task) has its own random stream, so the rows drawn for a modality do not depend on
which other modalities are replayed: stage i's replay of the image data is stage i-1's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .format import empty_dataset
from .seeding import seeded_subset

if TYPE_CHECKING:
    from datasets import Dataset


@dataclass
class ReplayRecord:
    """What a replay sample holds: the ids drawn per modality and task (save it with the stage)."""

    ratio: float
    seed: int
    ids: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "seed": self.seed, "ids": self.ids}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplayRecord:
        return cls(
            ratio=float(data["ratio"]),
            seed=int(data["seed"]),
            ids={m: dict(t) for m, t in data["ids"].items()},
        )

    def __len__(self) -> int:
        return sum(len(ids) for tasks in self.ids.values() for ids in tasks.values())


def replay_size(ratio: float, n: int) -> int:
    """Rows drawn from a task of `n` rows: `ratio * n` rounded half up, at least 1 when n > 0."""
    if n <= 0:
        return 0
    return min(n, max(1, math.floor(ratio * n + 0.5)))


def _check_ratio(ratio: float) -> None:
    if not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
        raise ValueError(f"The replay ratio must be in (0, 1] (0.1 for 10 %), got {ratio!r}.")


def sample_replay(
    datasets_by_modality: Mapping[str, Dataset],
    ratio: float,
    modalities: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[Dataset, ReplayRecord]:
    """Draws `ratio` of each modality's training rows, stratified over the `task` column.

    Args:
        datasets_by_modality: each modality's training data (a dataset with a `task` column).
        ratio: the share to draw, in (0, 1] (the paper: 0.01 or 0.1).
        modalities: which modalities to draw from (default: all, in the mapping's order).
        seed: seed of the draw; the same seed gives the same rows.

    Returns:
        The drawn rows (modality by modality, tasks in sorted order, rows in dataset order) and
        their `ReplayRecord`.
    """
    from datasets import concatenate_datasets

    _check_ratio(ratio)
    names = list(datasets_by_modality) if modalities is None else list(modalities)
    record = ReplayRecord(ratio=float(ratio), seed=seed)
    parts = []
    for modality in names:
        if modality not in datasets_by_modality:
            known = ", ".join(datasets_by_modality)
            raise ValueError(f"No training data for modality {modality!r} to replay (have: {known}).")
        dataset = datasets_by_modality[modality]
        if "task" not in dataset.column_names:
            raise ValueError(f"The {modality!r} training data has no 'task' column to stratify replay over.")
        by_task: dict[str, list[int]] = {}
        for index, task in enumerate(dataset["task"]):
            by_task.setdefault(task, []).append(index)
        ids = dataset["id"] if "id" in dataset.column_names else None
        record.ids[modality] = {}
        chosen: list[int] = []
        for task in sorted(by_task):
            indices = by_task[task]
            count = replay_size(ratio, len(indices))
            picked = [indices[i] for i in seeded_subset(len(indices), count, seed, "replay", modality, task)]
            record.ids[modality][task] = [ids[i] for i in picked] if ids is not None else []
            chosen.extend(picked)
        parts.append(dataset.select(chosen))
    if not parts:
        return empty_dataset(), record
    return concatenate_datasets(parts), record


def _stage_index(stage: int | str, order: Sequence[str]) -> int:
    """The 1-based stage number of `stage` (a number, or the modality learned at that stage)."""
    if isinstance(stage, str):
        if stage not in order:
            raise ValueError(f"Stage {stage!r} is not in the order {list(order)}.")
        return list(order).index(stage) + 1
    if not 1 <= stage <= len(order):
        raise ValueError(f"Stage must be in 1..{len(order)} for the order {list(order)}, got {stage}.")
    return stage


def replay_for_baseline(
    stage: int | str,
    order: Sequence[str],
    datasets_by_modality: Mapping[str, Dataset],
    ratio: float,
    seed: int = 0,
) -> tuple[Dataset, ReplayRecord]:
    """The Replay baseline's R_i for stage i (1-based, or the stage's modality): drawn from
    D_1 ... D_{i-1}. Stage 1 has nothing to replay: an empty dataset."""
    _check_ratio(ratio)
    index = _stage_index(stage, order)
    return sample_replay(datasets_by_modality, ratio, list(order[: index - 1]), seed)


def replay_for_realign(
    stage: int | str,
    order: Sequence[str],
    datasets_by_modality: Mapping[str, Dataset],
    ratio: float,
    seed: int = 0,
) -> tuple[Dataset, ReplayRecord]:
    """MERA's realignment data R_i for stage i (1-based, or the stage's modality): drawn from
    D_1 ... D_i, the current modality included (the paper's footnote 2)."""
    _check_ratio(ratio)
    index = _stage_index(stage, order)
    return sample_replay(datasets_by_modality, ratio, list(order[:index]), seed)
