"""Where benchmarks are cached, and how a finished build is published there.

A build happens in a temporary sibling of its target and is renamed into place, so a half-built
benchmark is never used; temp folders of builds killed long ago are removed.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from .manifest import read_manifest
from .spec import (
    GENERATOR_VERSION,
    EmbeddedSizes,
    benchmark_spec,
    canonical_modalities,
    spec_hash,
)

# A temp build folder older than this belongs to a killed build and is deleted.
STALE_BUILD_SECONDS = 6 * 3600


def default_cache_root() -> Path:
    """`$HF_MERA_CACHE/embedded`, else `~/.cache/hf_mera/embedded` (outside any repository)."""
    base = os.environ.get("HF_MERA_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "hf_mera") / "embedded"


def spec_dir(spec: dict) -> Path:
    """The cache folder of the benchmark described by `spec` (see `spec.benchmark_spec`)."""
    return default_cache_root() / f"v{GENERATOR_VERSION}-{spec['seed']}-{spec_hash(spec)}"


def default_benchmark_dir(
    seed: int = 0, sizes: EmbeddedSizes | None = None, modalities: Sequence[str] | None = None
) -> Path:
    """Where `build_embedded_benchmark` puts a benchmark when no root is given (`modalities`: default
    every modality with a generator)."""
    return spec_dir(benchmark_spec(seed, sizes or EmbeddedSizes(), canonical_modalities(modalities)))


def remove_stale_builds(target: Path) -> None:
    """Deletes temp folders of builds of `target` that were killed long ago (a live build is recent)."""
    cutoff = time.time() - STALE_BUILD_SECONDS
    for folder in target.parent.glob(f".{target.name}.building-*"):
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # removed meanwhile by someone else


def publish(tmp: Path, target: Path, replace: bool) -> None:
    """Renames the finished `tmp` to `target`. An existing benchmark there is replaced only when
    `replace`; otherwise it was published meanwhile by a concurrent build of the same spec, and is kept.

    Not `hf_mera.atomic.atomic_directory`: every process of a multi-process run builds the same default
    benchmark at once, so each build needs its own temp folder (`mkdtemp`), and a copy another process
    published (and may be reading) must stay in place rather than be replaced by an identical one."""
    old = None
    if target.exists() and replace:
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}")
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        if read_manifest(target) is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "STALE_BUILD_SECONDS",
    "default_benchmark_dir",
    "default_cache_root",
    "publish",
    "remove_stale_builds",
    "spec_dir",
]
