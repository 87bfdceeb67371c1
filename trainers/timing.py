"""Where a run's wall time goes: seconds per phase type, printed and reported at the end of a run.

`PhaseClock.phase(kind)` times a block; a block nested in another (features encoded inside a training
phase, the evaluation's feature encoding) counts for itself only, its parent for the rest, so the rows
plus "other" (what no block covers: building workspaces, bookkeeping) sum to the run's wall time.
Training phases are named as their checkpoints describe them (`backbone` is the text pre-training of the
library-built LLM, `add_modality`, `connector_pretrain`, `instruction_tuning`, `merge`, `realign`); the
others are `data` (loading or building the benchmark), `feature_encoding`, `evaluation` and
`publishing` (stage folders, model cards, the report). A phase reused from an earlier run costs
nothing here (its own cost stays in its `phase.json`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

TOTAL, OTHER = "total", "other"


class PhaseClock:
    """Exclusive wall time per phase type since the clock was made."""

    def __init__(self):
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: list[list] = []  # [kind, seconds spent in nested blocks]

    @contextmanager
    def phase(self, kind: str) -> Iterator[None]:
        started = time.perf_counter()
        self._open.append([kind, 0.0])
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            _, nested = self._open.pop()
            self.seconds[kind] += elapsed - nested
            if self._open:
                self._open[-1][1] += elapsed

    def table(self) -> dict[str, float]:
        """Seconds per phase type in order of cost, then `other` and `total` (the clock's age)."""
        total = time.perf_counter() - self.start
        rows = dict(sorted(self.seconds.items(), key=lambda item: -item[1]))
        rows[OTHER] = total - sum(rows.values())
        rows[TOTAL] = total
        return rows


def render_phase_table(rows: dict[str, float]) -> str:
    """Markdown: one row per phase type with seconds and share of the run."""
    total = rows[TOTAL]
    lines = ["| phase type | wall seconds | share |", "|---|---|---|"]
    for kind, seconds in rows.items():
        if kind != TOTAL:
            lines.append(f"| {kind} | {seconds:.1f} | {100 * seconds / total:.1f} % |")
    lines.append(f"| **{TOTAL}** | **{total:.1f}** | 100 % |")
    return "\n".join(lines)


__all__ = ["OTHER", "TOTAL", "PhaseClock", "render_phase_table"]
