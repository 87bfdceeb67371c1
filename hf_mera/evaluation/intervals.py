"""Statistics over seeds: a mean with its 95 % confidence interval, and paired differences.

A score measured on one seed is one draw: the benchmark (the seed draws the embedded benchmark too),
the initialisation and the data order all move with it, and between two machines of one kind even
the same seed moves (CPU kernels round differently; STACK-NOTES). So every comparison is over seeds:

    mean ± t_{0.975, n−1} · s / √n          (Student's t, s the sample standard deviation, n seeds)

and a method is compared with a reference on the *same* seeds and orders (a paired difference
dₛ = methodₛ − referenceₛ, then the interval of the mean d): the seed-to-seed swing that both share
cancels, so a pair resolves a smaller gap than two separate intervals would. A difference is
"resolved" when its interval excludes 0.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """A mean over `n` values with the half-width of its confidence interval (`nan` for n < 2)."""

    mean: float
    half_width: float
    n: int
    confidence: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def resolved(self) -> bool:
        """True when the interval excludes 0 (for a difference: the sign is settled)."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def __str__(self) -> str:
        if self.n == 0:
            return "–"
        if self.n == 1:
            return f"{self.mean:.2f} (1 seed)"
        return f"{self.mean:.2f} ± {self.half_width:.2f}"


def t_interval(values: Sequence[float | None], confidence: float = 0.95) -> Interval:
    """Mean of `values` (None and NaN dropped) with its two-sided Student-t confidence interval.

    Raises:
        `ValueError`: `confidence` outside (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not kept:
        return Interval(math.nan, math.nan, 0, confidence)
    if len(kept) == 1:
        return Interval(kept[0], math.nan, 1, confidence)
    from scipy.stats import t

    quantile = float(t.ppf(0.5 + confidence / 2, df=len(kept) - 1))
    half = quantile * statistics.stdev(kept) / math.sqrt(len(kept))
    return Interval(statistics.fmean(kept), half, len(kept), confidence)


def paired_difference(
    method: Mapping[object, float | None], reference: Mapping[object, float | None], confidence: float = 0.95
) -> Interval:
    """Interval of the mean of method[k] − reference[k] over the keys (seed, order, …) both have.

    Keys where either value is missing are left out, never paired with another key's value.
    """
    diffs = [
        method[key] - reference[key]
        for key in method
        if key in reference and method[key] is not None and reference[key] is not None
    ]
    return t_interval(diffs, confidence)


__all__ = ["Interval", "paired_difference", "t_interval"]
