"""The paper's continual-learning metrics (section 5.1) as pure functions of score dictionaries.

Notation (paper → arguments): S^i_{j,k} is `stage_scores[modality_j][task_k]` measured after stage i;
S^sup_{j,k} is `expert_scores[modality_j][task_k]`, the score of an expert trained on modality j alone;
the training order M_1, M_2, … is `order`; stages are numbered from 1 as in the paper.

    Relative Gain^i_j    = 100 · (1/K) Σ_k S^i_{j,k} / S^sup_{j,k}          (in percent)
    Bw Relative Gain^i   = (1/(i−1)) Σ_{j<i} Relative Gain^i_j               (i ≥ 2)
    Fw Relative Gain^i   = Relative Gain^i_i

Stage 1 has no earlier modality, so Bw Relative Gain^1 is undefined by the formula. The paper's
figures "set it to 100%" except for EProj, whose plotted stage-1 value is its own Relative Gain^1_1
(below 100 because it never tunes the LLM). Both cases are Relative Gain^1_1 (a model trained like the
expert *is* the expert after stage 1), and Table 2 is reproduced only with that value *included* in the
mean and with the *sample* standard deviation (n − 1); see `tests/test_evaluation_paper_tables.py`.
`stage_one="relative_gain"` (default) uses it, `stage_one="100"` forces 100.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

Scores = Mapping[str, float]  # task (or dataset) name → score
StageScores = Mapping[str, Scores]  # modality → task → score
StageOne = Literal["relative_gain", "100"]


class MeanStd(NamedTuple):
    mean: float
    std: float


def relative_gain(scores: Scores, expert_scores: Scores) -> float:
    """Relative Gain (percent) of one modality: mean over its K datasets of S / S^sup, ×100.

    Args:
        scores (`Mapping[str, float]`): task → score S^i_{j,k} of the modality at some stage.
        expert_scores (`Mapping[str, float]`): task → expert score S^sup_{j,k}; its keys are the K datasets.

    Raises:
        `ValueError`: no expert tasks, a task missing from `scores`, or an expert score of 0.
    """
    if not expert_scores:
        raise ValueError("expert_scores is empty: Relative Gain needs at least one task.")
    ratios = []
    for task, expert in expert_scores.items():
        if task not in scores:
            raise ValueError(
                f"scores lacks task {task!r} (have {sorted(scores)}); expert tasks: {sorted(expert_scores)}."
            )
        if expert == 0:
            raise ValueError(f"expert_scores[{task!r}] is 0; Relative Gain divides by it.")
        ratios.append(scores[task] / expert)
    return 100.0 * sum(ratios) / len(ratios)


def _modality_gain(stage_scores: StageScores, expert_scores: StageScores, modality: str, stage: int) -> float:
    if modality not in stage_scores:
        raise ValueError(
            f"Stage {stage} has no scores for modality {modality!r} (has {sorted(stage_scores)})."
        )
    if modality not in expert_scores:
        raise ValueError(f"expert_scores has no modality {modality!r} (has {sorted(expert_scores)}).")
    return relative_gain(stage_scores[modality], expert_scores[modality])


def _check_stage(order: Sequence[str], stage: int, stage_one: str) -> None:
    if not 1 <= stage <= len(order):
        raise ValueError(f"stage must be in 1..{len(order)} for order {list(order)}, got {stage}.")
    if stage_one not in ("relative_gain", "100"):
        raise ValueError(f"stage_one must be 'relative_gain' or '100', got {stage_one!r}.")


def backward_relative_gain(
    stage_scores: StageScores,
    expert_scores: StageScores,
    order: Sequence[str],
    stage: int,
    stage_one: StageOne = "relative_gain",
) -> float:
    """Bw Relative Gain^i: mean Relative Gain of the modalities learned *before* stage i.

    Args:
        stage_scores (`Mapping[str, Mapping[str, float]]`): modality → task → score after stage `stage`.
        expert_scores (`Mapping[str, Mapping[str, float]]`): modality → task → expert score.
        order (`Sequence[str]`): modalities in training order (M_1 first).
        stage (`int`): i, counted from 1.
        stage_one (`"relative_gain"` or `"100"`): the stage-1 value, Relative Gain^1_1 or a fixed 100.
    """
    _check_stage(order, stage, stage_one)
    if stage == 1:
        if stage_one == "100":
            return 100.0
        return _modality_gain(stage_scores, expert_scores, order[0], 1)
    gains = [_modality_gain(stage_scores, expert_scores, order[j], stage) for j in range(stage - 1)]
    return sum(gains) / len(gains)


def forward_relative_gain(
    stage_scores: StageScores,
    expert_scores: StageScores,
    order: Sequence[str],
    stage: int,
    stage_one: StageOne = "relative_gain",
) -> float:
    """Fw Relative Gain^i = Relative Gain^i_i: how well stage i learned its own modality (plasticity).

    Arguments as in `backward_relative_gain`; `stage_one="100"` reproduces the figures' convention of
    plotting 100 at stage 1 for every method.
    """
    _check_stage(order, stage, stage_one)
    if stage == 1 and stage_one == "100":
        return 100.0
    return _modality_gain(stage_scores, expert_scores, order[stage - 1], stage)


def summarize_over_stages(values: Sequence[float], ddof: int = 1) -> MeanStd:
    """Mean and standard deviation over stages, as in Table 2.

    Table 2 takes the Bw Relative Gain of *every* stage including stage 1, and the sample standard
    deviation (`ddof=1`, divisor n − 1). With fewer than `ddof + 1` values the std is NaN.

    Raises:
        `ValueError`: `values` is empty.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("values is empty: nothing to summarize.")
    mean = sum(values) / len(values)
    if len(values) <= ddof:
        return MeanStd(mean, math.nan)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - ddof)
    return MeanStd(mean, math.sqrt(variance))


def mean_over_orders(curves: Sequence[Sequence[float]]) -> list[float]:
    """Stage-wise mean of several runs' curves (Figures 3 and 4 average the two training orders).

    Raises:
        `ValueError`: no curves, or curves of different lengths.
    """
    if not curves:
        raise ValueError("curves is empty.")
    lengths = {len(c) for c in curves}
    if len(lengths) != 1:
        raise ValueError(f"curves have different numbers of stages: {sorted(lengths)}.")
    return [sum(stage) / len(stage) for stage in zip(*curves)]


__all__ = [
    "MeanStd",
    "backward_relative_gain",
    "forward_relative_gain",
    "mean_over_orders",
    "relative_gain",
    "summarize_over_stages",
]
