"""Merge schedules: the weight c of stage i's vanilla model in θᵢ = θᵢ₋₁ + c · (θᵢ,vanilla − θᵢ₋₁).

Symbols → arguments: i `stage_index` (1-based), c the returned coefficient in (0, 1].

Built-ins: "mera" (c = 1/i, the paper's running average; registered in `mera.py`, next to the merge it
belongs to), "constant" (c = alpha at every stage, an exponential moving average of the stage models),
"none" (c = 1: keep the vanilla model, i.e. no merge). Whether to merge at stage 1 (θ₀ = the starting
LLM) is the trainer's call; "mera" gives c = 1 there anyway.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from typing import Any

from ..registry import Registry

ScheduleFn = Callable[..., float]

# name → fn(stage_index: int, **kwargs) -> float; a second registration of a name raises.
MERGE_SCHEDULES: Registry[ScheduleFn] = Registry("merge schedule")
register_merge_schedule = MERGE_SCHEDULES.register
get_merge_schedule = MERGE_SCHEDULES.get


def check_stage_index(stage_index: int) -> int:
    """MCL stages are counted from 1; returns the index as a plain int."""
    if isinstance(stage_index, bool):
        raise ValueError(f"stage_index must be an integer >= 1, got {stage_index!r}")
    try:
        index = operator.index(stage_index)
    except TypeError:
        raise ValueError(f"stage_index must be an integer >= 1, got {stage_index!r}") from None
    if index < 1:
        raise ValueError(f"stage_index must be an integer >= 1 (stages are 1-based), got {index}")
    return index


@register_merge_schedule("constant")
def constant_schedule(stage_index: int, alpha: float) -> float:
    """c = alpha ∈ (0, 1] at every stage."""
    if not 0 < alpha <= 1:
        raise ValueError(f"merge schedule 'constant': alpha must be in (0, 1], got {alpha}")
    return float(alpha)


@register_merge_schedule("none")
def no_merge_schedule(stage_index: int) -> float:
    """c = 1: θᵢ = θᵢ,vanilla (plain sequential fine-tuning)."""
    return 1.0


class MergeSchedule:
    """Coefficient of the vanilla model per stage: `MergeSchedule("constant", alpha=0.5)(i)`.

    Args:
        name: a registered schedule ("mera", "constant", "none", or one added with
            `register_merge_schedule`).
        **kwargs: the schedule's own arguments (e.g. `alpha` for "constant"); checked here, so a
            bad config fails when it is read, not at the end of stage 1.
    """

    def __init__(self, name: str = "mera", **kwargs: Any) -> None:
        fn = get_merge_schedule(name)
        try:
            inspect.signature(fn).bind(1, **kwargs)
        except TypeError as err:
            raise ValueError(f"merge schedule {name!r}: bad arguments {kwargs}: {err}") from None
        self.name, self.kwargs, self._fn = name, dict(kwargs), fn
        self(1)  # validate the argument values too (e.g. alpha out of range)

    def __call__(self, stage_index: int) -> float:
        """c for stage i (1-based), in (0, 1]."""
        coefficient = float(self._fn(check_stage_index(stage_index), **self.kwargs))
        if not 0 < coefficient <= 1:
            raise ValueError(
                f"merge schedule {self.name!r} gave coefficient {coefficient} for stage {stage_index}, "
                "outside (0, 1]"
            )
        return coefficient

    coefficient = __call__

    def to_dict(self) -> dict[str, Any]:
        """{"name": …, **kwargs}, the form a curriculum YAML holds."""
        return {"name": self.name, **self.kwargs}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> MergeSchedule:
        """Inverse of `to_dict`; a missing name means "mera"."""
        config = dict(config)
        return cls(config.pop("name", "mera"), **config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MergeSchedule) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"MergeSchedule({self.name!r}{args})"
