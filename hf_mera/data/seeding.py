"""Seeded random streams that are stable across processes and independent per purpose."""

from __future__ import annotations

import hashlib

import numpy as np


def stable_int(*parts: object) -> int:
    """A 32-bit integer from `parts` that is stable across processes (`hash()` is salted per process)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def seeded_rng(seed: int, *names: object) -> np.random.Generator:
    """An independent random stream per (seed, names): e.g. building a subset of a benchmark, or
    replaying fewer modalities, draws the same items for what it keeps."""
    return np.random.default_rng([seed, stable_int(*names)])


def seeded_subset(n: int, count: int, seed: int, *names: object) -> list[int]:
    """`count` distinct indices of range(n), sorted, drawn from the stream `seeded_rng(seed, *names)`."""
    return sorted(int(i) for i in seeded_rng(seed, *names).choice(n, count, replace=False))
