"""Builds the embedded benchmark once into a cache folder and serves it as sample-format datasets.

The benchmark is a small, offline stand-in for the paper's eight datasets: per modality a caption
and a QA set (train, val and test), plus a cross-modal test set. It is a pure function of the seed, the
sizes and the modalities, with no optional system package involved (spoken words ship as package
data), so every machine builds the same one; `manifest.json`'s `content_hash`, a SHA-256 over every
annotation and media file, is the benchmark's name beside every number reported on it. The folder
is built in a temporary sibling and renamed into place, so a half-built benchmark is never used; a
finished one is reused.

The jobs live beside this module: `spec` (sizes, version, the spec that names the folder), `cache`
(where it lives, publishing a build), `manifest` (folder layout, content hash), `writer` (generating
the files) and `benchmark` (reading them back). Their public names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..format import CROSS_MODALITY
from .base import get_embedded_modality
from .benchmark import EmbeddedBenchmark
from .cache import (
    STALE_BUILD_SECONDS,
    default_benchmark_dir,
    default_cache_root,
    publish,
    remove_stale_builds,
    spec_dir,
)
from .cross_modal import available_families
from .manifest import MANIFEST, content_hash, read_manifest
from .spec import (
    EMBEDDED_SPLITS,
    EMBEDDED_TASKS,
    GENERATOR_VERSION,
    EmbeddedSizes,
    benchmark_spec,
    canonical_modalities,
    spec_hash,
)
from .writer import BenchmarkWriter

logger = logging.getLogger(__name__)


def build_embedded_benchmark(
    root: str | Path | None = None,
    seed: int = 0,
    sizes: EmbeddedSizes | None = None,
    modalities: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> EmbeddedBenchmark:
    """Builds (or reuses) the embedded benchmark and returns it.

    Args:
        root: the benchmark folder; defaults to `default_benchmark_dir(seed, sizes, modalities)`
            (`~/.cache/hf_mera/embedded/v<version>-<seed>-<hash>`, or under `$HF_MERA_CACHE`).
        seed: every random choice derives from it (per modality, task and split).
        sizes: example counts; defaults to `EmbeddedSizes()`.
        modalities: the modalities to generate (default: every registered modality whose
            `ModalitySpec` has a generator); the cross-modal set uses the question families whose
            inputs are all among them.
        overwrite: rebuild even when a matching benchmark exists (or replace a different one at `root`).
        progress: show a progress bar.
    """
    sizes = sizes or EmbeddedSizes()
    modalities = canonical_modalities(modalities)
    spec = benchmark_spec(seed, sizes, modalities)
    target = Path(root) if root is not None else spec_dir(spec)
    if target.exists():
        manifest = read_manifest(target)
        if manifest is not None and manifest.get("spec") == spec and not overwrite:
            return EmbeddedBenchmark(target)
        if manifest is None and any(target.iterdir()):
            raise ValueError(
                f"{target} exists and is not an embedded benchmark (no {MANIFEST}); refusing to replace it."
            )
        if manifest is not None and not overwrite:
            raise ValueError(
                f"{target} holds an embedded benchmark built with {manifest.get('spec')}, not {spec}; "
                "pass overwrite=True to replace it."
            )

    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(target)
    started = time.perf_counter()
    # A sibling temp folder: same file system, so the final rename is atomic.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private (0700); the published benchmark should read like any folder
    try:
        generators = {
            m: get_embedded_modality(m)(seed, {"speech_fraction": sizes.speech_fraction}) for m in modalities
        }
        writer = BenchmarkWriter(tmp, seed, sizes, generators, progress)
        counts = {}
        for modality in modalities:
            # Every train set of a modality before its val sets: val leaves out the media train uses.
            for split in EMBEDDED_SPLITS:
                for task in EMBEDDED_TASKS:
                    counts[f"{modality}-{task}-{split}"] = writer.modality_split(modality, task, split)
        counts[f"{CROSS_MODALITY}-cross-test"] = writer.cross()
        writer.bar.close()
        manifest = {
            "spec": spec,
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "sizes": dataclasses.asdict(sizes),
            "modalities": modalities,
            "counts": counts,
            "question_types": {
                m: {t.name: list(t.answers) for t in g.question_types()} for m, g in generators.items()
            },
            "cross_families": {f.name: list(f.answers) for f in available_families(tuple(modalities))},
            "video_codec": _video_codec() if "video" in modalities else None,
            "content_hash": content_hash(tmp),
            "build_seconds": round(time.perf_counter() - started, 2),
        }
        # The manifest is written last: a folder with a manifest is complete.
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        publish(tmp, target, replace=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Built the embedded benchmark in %s (%.1f s).", target, time.perf_counter() - started)
    return EmbeddedBenchmark(target)


def _video_codec() -> str:
    from .video import video_codec

    return video_codec()


__all__ = [
    "EMBEDDED_SPLITS",
    "EMBEDDED_TASKS",
    "GENERATOR_VERSION",
    "MANIFEST",
    "STALE_BUILD_SECONDS",
    "EmbeddedBenchmark",
    "EmbeddedSizes",
    "benchmark_spec",
    "build_embedded_benchmark",
    "canonical_modalities",
    "content_hash",
    "default_benchmark_dir",
    "default_cache_root",
    "spec_hash",
]
