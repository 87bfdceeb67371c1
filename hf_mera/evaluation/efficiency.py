"""Training / inference cost records (the paper's Table 6) and a `measure` context manager."""

from __future__ import annotations

import resource
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal


@dataclass
class EfficiencyRecord:
    """One row of Table 6.

    Args:
        method (`str`): method name.
        train_peak_memory_bytes (`int` or `None`): peak memory while training (the paper: batch size 4).
        train_wall_seconds (`float` or `None`): total wall-clock time to learn all modalities.
        infer_peak_memory_bytes (`int` or `None`): peak memory while generating (the paper: batch size 1).
        latency_per_token_ms (`float` or `None`): generation wall time divided by generated tokens.
    """

    method: str
    train_peak_memory_bytes: int | None = None
    train_wall_seconds: float | None = None
    infer_peak_memory_bytes: int | None = None
    latency_per_token_ms: float | None = None


@dataclass
class Measurement:
    """Filled in when the `measure` block exits.

    Args:
        wall_seconds (`float`): elapsed wall-clock time.
        peak_memory_bytes (`int`): peak memory, as measured by `memory_source`.
        memory_source (`str`): "cuda_max_memory_allocated", "ru_maxrss" or "tracemalloc".
    """

    wall_seconds: float = 0.0
    peak_memory_bytes: int = 0
    memory_source: str = ""


def _cuda_torch():
    # Only look at CUDA when the caller already imported torch: measuring must not import it.
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch
    return None


def _max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB, macOS bytes


@contextmanager
def measure(cpu_memory: Literal["ru_maxrss", "tracemalloc"] = "ru_maxrss") -> Iterator[Measurement]:
    """Measure wall time and peak memory of the enclosed block.

    Memory, by where the work runs:
    - CUDA (torch already imported and a GPU available): `torch.cuda.max_memory_allocated()` after
      `torch.cuda.reset_peak_memory_stats()`, i.e. the peak of tensors allocated *inside* the block on the
      current device (what the paper's GPU numbers mean).
    - otherwise, `cpu_memory="ru_maxrss"` (default): the process's peak resident set size from
      `resource.getrusage`. It cannot be reset, so it is the peak of the whole process up to the end of
      the block, an upper bound for the block itself;
    - `cpu_memory="tracemalloc"`: the peak of Python-heap allocations inside the block. It misses memory
      that native libraries (torch's CPU allocator included) take outside Python's allocator.

    Example:
        >>> with measure() as m:
        ...     run_training()
        >>> m.wall_seconds, m.peak_memory_bytes, m.memory_source
    """
    if cpu_memory not in ("ru_maxrss", "tracemalloc"):
        raise ValueError(f"cpu_memory must be 'ru_maxrss' or 'tracemalloc', got {cpu_memory!r}.")
    result = Measurement()
    torch = _cuda_torch()
    started_tracing = False
    if torch is not None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    elif cpu_memory == "tracemalloc" and not tracemalloc.is_tracing():
        tracemalloc.start()
        started_tracing = True
    elif cpu_memory == "tracemalloc":
        tracemalloc.reset_peak()
    start = time.perf_counter()
    try:
        yield result
    finally:
        if torch is not None:
            torch.cuda.synchronize()  # kernels run asynchronously; wait so the time is the work's
        result.wall_seconds = time.perf_counter() - start
        if torch is not None:
            result.peak_memory_bytes = int(torch.cuda.max_memory_allocated())
            result.memory_source = "cuda_max_memory_allocated"
        elif cpu_memory == "tracemalloc":
            result.peak_memory_bytes = tracemalloc.get_traced_memory()[1]
            result.memory_source = "tracemalloc"
            if started_tracing:
                tracemalloc.stop()
        else:
            result.peak_memory_bytes = _max_rss_bytes()
            result.memory_source = "ru_maxrss"


def format_bytes(num_bytes: int | None) -> str:
    """Binary units, two decimals: 40190000000 → "37.43 GiB" (the paper's "GB" are these)."""
    if num_bytes is None:
        return "–"
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if num_bytes >= size:
            return f"{num_bytes / size:.2f} {unit}"
    return f"{num_bytes} B"


def format_duration(seconds: float | None) -> str:
    """Hours as in Table 6 ("53.0 h") for long runs, minutes or seconds for short ones."""
    if seconds is None:
        return "–"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def render_efficiency_table(records: Sequence[EfficiencyRecord]) -> str:
    """Markdown table shaped like Table 6: training peak memory and time, inference memory and latency."""
    lines = [
        "| Method | Training peak memory | Training time | Inference peak memory | Latency per token |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        latency = "–" if r.latency_per_token_ms is None else f"{r.latency_per_token_ms:.1f} ms"
        lines.append(
            f"| {r.method} | {format_bytes(r.train_peak_memory_bytes)} | {format_duration(r.train_wall_seconds)} "
            f"| {format_bytes(r.infer_peak_memory_bytes)} | {latency} |"
        )
    return "\n".join(lines)


__all__ = [
    "EfficiencyRecord",
    "Measurement",
    "format_bytes",
    "format_duration",
    "measure",
    "render_efficiency_table",
]
