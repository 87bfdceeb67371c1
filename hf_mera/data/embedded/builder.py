"""Builds the embedded benchmark once into a cache folder and serves it as sample-format datasets.

The benchmark is a small, offline stand-in for the paper's eight datasets: per modality a caption
and a QA set (train and test), plus a cross-modal test set. It is a pure function of the seed, the
sizes and the modalities, with no optional system package involved (spoken words ship as package
data), so every machine builds the same one; `manifest.json`'s `content_hash`, a SHA-256 over every
annotation and media file, is the benchmark's name beside every number reported on it. The folder
is built in a temporary sibling and renamed into place, so a half-built benchmark is never used; a
finished one is reused.

Layout of a benchmark folder::

    manifest.json                       generator version, seed, sizes, counts, question types, content hash
    annotations/<modality>-<task>-<split>.jsonl   one {"sample", "meta"} per line, relative paths
    <modality>/<split>/...              media files (png, mp4, wav, npy/ply)
    cross/test/...                      media of the cross-modal questions
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..format import CROSS_MODALITY, make_sample, samples_to_dataset, strip_placeholders
from ..seeding import seeded_rng
from .base import EMBEDDED_MODALITY_REGISTRY, EmbeddedModality, get_embedded_modality
from .cross_modal import available_families, draw_cross_items

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

# Bump whenever generated content changes: the version is part of the cache folder's name.
# 2: spoken words from the shipped recordings on every machine (1 had them only with espeak-ng).
GENERATOR_VERSION = "2"
DEFAULT_MODALITIES = ("image", "video", "audio", "point_cloud")
EMBEDDED_TASKS = ("caption", "qa")
EMBEDDED_SPLITS = ("train", "test")
MANIFEST = "manifest.json"
# A temp build folder older than this belongs to a killed build and is deleted.
STALE_BUILD_SECONDS = 6 * 3600


@dataclass(frozen=True)
class EmbeddedSizes:
    """How many examples the embedded benchmark has (per modality unless said otherwise)."""

    caption_train: int = field(default=400, metadata={"help": "Caption examples per modality, train split."})
    qa_train: int = field(default=400, metadata={"help": "QA examples per modality, train split."})
    caption_test: int = field(default=60, metadata={"help": "Caption examples per modality, test split."})
    qa_test: int = field(default=60, metadata={"help": "QA examples per modality, test split."})
    cross_test: int = field(default=80, metadata={"help": "Cross-modal test questions (2-4 inputs each)."})
    speech_fraction: float = field(
        default=0.25,
        metadata={
            "help": "Share of audio caption clips that are a spoken word instead of beeps; spoken-word "
            "questions are one of the audio question types (recordings ship with the package)."
        },
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "speech_fraction":
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"EmbeddedSizes.speech_fraction must be in [0, 1], got {value}.")
            elif not isinstance(value, int) or value < 0:
                raise ValueError(f"EmbeddedSizes.{f.name} must be a non-negative int, got {value!r}.")

    def count(self, task: str, split: str) -> int:
        """The number of examples of `task` ("caption" | "qa") in `split` ("train" | "test")."""
        return getattr(self, f"{task}_{split}")


def default_cache_root() -> Path:
    """`$HF_MERA_CACHE/embedded`, else `~/.cache/hf_mera/embedded` (outside any repository)."""
    base = os.environ.get("HF_MERA_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "hf_mera") / "embedded"


def canonical_modalities(modalities: Sequence[str]) -> list[str]:
    """`modalities` in one fixed order (the paper's, then by name): a curriculum's order (sequential
    or reverse) does not change the benchmark, so both orders train and test on the same data."""
    names = set(modalities)
    for name in names:
        get_embedded_modality(name)  # ValueError naming the known ones
    if not names:
        raise ValueError("The embedded benchmark needs at least one modality.")
    return sorted(
        names,
        key=lambda m: (
            DEFAULT_MODALITIES.index(m) if m in DEFAULT_MODALITIES else len(DEFAULT_MODALITIES),
            m,
        ),
    )


def benchmark_spec(seed: int, sizes: EmbeddedSizes, modalities: Sequence[str]) -> dict[str, Any]:
    """Everything the generated content depends on; its hash names the cache folder."""
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "sizes": dataclasses.asdict(sizes),
        "modalities": list(modalities),
    }


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def default_benchmark_dir(
    seed: int = 0, sizes: EmbeddedSizes | None = None, modalities: Sequence[str] = DEFAULT_MODALITIES
) -> Path:
    """Where `build_embedded_benchmark` puts a benchmark when no root is given."""
    spec = benchmark_spec(seed, sizes or EmbeddedSizes(), canonical_modalities(modalities))
    return default_cache_root() / f"v{GENERATOR_VERSION}-{seed}-{spec_hash(spec)}"


def content_hash(folder: str | Path) -> str:
    """SHA-256 (first 12 hex digits) over the relative path and bytes of every file in `folder`
    but the manifest: equal hashes mean byte-identical benchmarks."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Not JSON serialisable: {type(value).__name__}")


def _annotation_name(modality: str, task: str, split: str) -> str:
    return f"annotations/{modality}-{task}-{split}.jsonl"


class _Writer:
    """Generates the annotation files and media of one benchmark into a (temporary) folder."""

    def __init__(
        self,
        folder: Path,
        seed: int,
        sizes: EmbeddedSizes,
        generators: dict[str, EmbeddedModality],
        progress: bool,
    ):
        self.folder = folder
        self.seed = seed
        self.sizes = sizes
        self.generators = generators
        (folder / "annotations").mkdir(parents=True)
        total = sum(sizes.count(t, s) for t in EMBEDDED_TASKS for s in EMBEDDED_SPLITS) * len(generators)
        total += sizes.cross_test if available_families(tuple(generators)) else 0
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="embedded benchmark", unit="item", disable=not progress)

    def modality_split(self, modality: str, task: str, split: str) -> int:
        generator = self.generators[modality]
        rng = seeded_rng(self.seed, modality, task, split)
        media_dir = self.folder / modality / split
        media_dir.mkdir(parents=True, exist_ok=True)
        n = self.sizes.count(task, split)
        lines = []
        if task == "caption":
            drawn = [
                (generator.sample_attributes(rng, split, **c), "", generator.caption_prompt, None)
                for c in generator.caption_plan(rng, n)
            ]
        else:
            drawn = [
                (q.attributes, q.question, q.question, (q.question_type, q.answer))
                for q in generator.draw_qa(rng, split, n)
            ]
        for index, (attributes, question, prompt, qa) in enumerate(drawn):
            name = generator.write(attributes, media_dir, f"{task}-{index:05d}", rng)
            answer = generator.caption(attributes) if qa is None else qa[1]
            sample = make_sample(
                id=f"embedded/{modality}/{task}/{split}/{index:05d}",
                modality=modality,
                task=task,
                media=[(modality, f"{modality}/{split}/{name}")],
                prompt=prompt,
                answer=answer,
                question=question,
            )
            meta = {"question_type": "caption" if qa is None else qa[0], "attributes": attributes}
            lines.append(json.dumps({"sample": sample, "meta": meta}, default=_jsonable))
            self.bar.update()
        self._write_lines(_annotation_name(modality, task, split), lines)
        return len(lines)

    def cross(self) -> int:
        rng = seeded_rng(self.seed, CROSS_MODALITY, "test")
        media_dir = self.folder / CROSS_MODALITY / "test"
        media_dir.mkdir(parents=True, exist_ok=True)
        lines = []
        for index, item in enumerate(draw_cross_items(rng, self.sizes.cross_test, self.generators)):
            media = []
            for position, (modality, attributes) in enumerate(item.inputs):
                name = self.generators[modality].write(
                    attributes, media_dir, f"{index:05d}-{position}-{modality}", rng
                )
                media.append((modality, f"{CROSS_MODALITY}/test/{name}"))
            sample = make_sample(
                id=f"embedded/cross/test/{index:05d}",
                modality=CROSS_MODALITY,
                task="cross",
                media=media,
                prompt=item.question,
                answer=item.answer,
                question=item.question,
            )
            meta = {"question_type": item.family, "attributes": [a for _, a in item.inputs]}
            lines.append(json.dumps({"sample": sample, "meta": meta}, default=_jsonable))
            self.bar.update()
        self._write_lines(_annotation_name(CROSS_MODALITY, "cross", "test"), lines)
        return len(lines)

    def _write_lines(self, name: str, lines: list[str]) -> None:
        (self.folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def build_embedded_benchmark(
    root: str | Path | None = None,
    seed: int = 0,
    sizes: EmbeddedSizes | None = None,
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    overwrite: bool = False,
    progress: bool = True,
) -> EmbeddedBenchmark:
    """Builds (or reuses) the embedded benchmark and returns it.

    Args:
        root: the benchmark folder; defaults to `default_benchmark_dir(seed, sizes, modalities)`
            (`~/.cache/hf_mera/embedded/v<version>-<seed>-<hash>`, or under `$HF_MERA_CACHE`).
        seed: every random choice derives from it (per modality, task and split).
        sizes: example counts; defaults to `EmbeddedSizes()`.
        modalities: the modalities to generate; the cross-modal set uses the question families
            whose inputs are all among them.
        overwrite: rebuild even when a matching benchmark exists (or replace a different one at `root`).
        progress: show a progress bar.
    """
    sizes = sizes or EmbeddedSizes()
    modalities = canonical_modalities(modalities)
    spec = benchmark_spec(seed, sizes, modalities)
    target = (
        Path(root)
        if root is not None
        else default_cache_root() / f"v{GENERATOR_VERSION}-{seed}-{spec_hash(spec)}"
    )
    if target.exists():
        manifest = _read_manifest(target)
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
    _remove_stale_builds(target)
    started = time.perf_counter()
    # A sibling temp folder: same file system, so the final rename is atomic.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private (0700); the published benchmark should read like any folder
    try:
        generators = {
            m: EMBEDDED_MODALITY_REGISTRY[m](seed, {"speech_fraction": sizes.speech_fraction})
            for m in modalities
        }
        writer = _Writer(tmp, seed, sizes, generators, progress)
        counts = {}
        for modality in modalities:
            for task in EMBEDDED_TASKS:
                for split in EMBEDDED_SPLITS:
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
        _publish(tmp, target, replace=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Built the embedded benchmark in %s (%.1f s).", target, time.perf_counter() - started)
    return EmbeddedBenchmark(target)


def _video_codec() -> str:
    from .video import video_codec

    return video_codec()


def _remove_stale_builds(target: Path) -> None:
    """Deletes temp folders of builds of `target` that were killed long ago (a live build is recent)."""
    cutoff = time.time() - STALE_BUILD_SECONDS
    for folder in target.parent.glob(f".{target.name}.building-*"):
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # removed meanwhile by someone else


def _publish(tmp: Path, target: Path, replace: bool) -> None:
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
        if _read_manifest(target) is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class EmbeddedBenchmark:
    """A built embedded benchmark: sample-format datasets with absolute media paths.

    Args:
        root: the benchmark folder (with its `manifest.json`).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        manifest = _read_manifest(self.root)
        if manifest is None:
            raise ValueError(f"{self.root} is not a built embedded benchmark (no readable {MANIFEST}).")
        self.manifest = manifest
        self._cache: dict[str, tuple[Dataset, list[dict[str, Any]]]] = {}

    def __repr__(self) -> str:
        return f"EmbeddedBenchmark(root={str(self.root)!r}, modalities={self.modalities}, seed={self.seed})"

    @property
    def seed(self) -> int:
        return self.manifest["seed"]

    @property
    def content_hash(self) -> str:
        """The benchmark's content hash (`content_hash` of its folder, recorded at build time):
        name it beside every number measured on this benchmark."""
        return self.manifest["content_hash"]

    @property
    def modalities(self) -> list[str]:
        return list(self.manifest["modalities"])

    @property
    def sizes(self) -> EmbeddedSizes:
        return EmbeddedSizes(**self.manifest["sizes"])

    def _load(self, modality: str, task: str, split: str) -> tuple[Dataset, list[dict[str, Any]]]:
        key = _annotation_name(modality, task, split)
        if key not in self._cache:
            path = self.root / key
            if not path.is_file():
                raise ValueError(
                    f"The embedded benchmark at {self.root} has no {modality}/{task}/{split} set."
                )
            samples, metas = [], []
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                sample = record["sample"]
                sample["media"] = [{**m, "path": str(self.root / m["path"])} for m in sample["media"]]
                samples.append(sample)
                metas.append(record["meta"])
            self._cache[key] = (samples_to_dataset(samples), metas)
        return self._cache[key]

    def dataset(self, modality: str, task: str, split: str) -> Dataset:
        """The `task` ("caption" | "qa") set of `modality` in `split` ("train" | "test")."""
        if modality not in self.modalities:
            raise ValueError(
                f"Modality {modality!r} is not in this benchmark ({', '.join(self.modalities)})."
            )
        if task not in EMBEDDED_TASKS:
            raise ValueError(f"task must be one of {EMBEDDED_TASKS}, got {task!r}.")
        if split not in EMBEDDED_SPLITS:
            raise ValueError(f"split must be one of {EMBEDDED_SPLITS}, got {split!r}.")
        return self._load(modality, task, split)[0]

    def train_dataset(self, modality: str) -> Dataset:
        """Caption and QA training sets of `modality` together (the paper's D_j)."""
        from datasets import concatenate_datasets

        return concatenate_datasets([self.dataset(modality, t, "train") for t in EMBEDDED_TASKS])

    def cross_modal_test(self) -> Dataset:
        """The cross-modal test questions (modality and task "cross")."""
        return self._load(CROSS_MODALITY, "cross", "test")[0]

    def metadata(self, modality: str, task: str, split: str) -> list[dict[str, Any]]:
        """Per row of `dataset(...)` (or of the cross-modal set with modality "cross"): its
        `question_type` ("caption" for captions) and generating `attributes`."""
        if modality == CROSS_MODALITY:
            return self._load(CROSS_MODALITY, "cross", "test")[1]
        self.dataset(modality, task, split)
        return self._load(modality, task, split)[1]

    def question_types(self, modality: str) -> dict[str, list[str]]:
        """The answer set of each question type of `modality` (or of each cross-modal family)."""
        if modality == CROSS_MODALITY:
            return dict(self.manifest["cross_families"])
        return dict(self.manifest["question_types"][modality])

    def all_texts(self) -> list[str]:
        """Every distinct prompt line, question, answer and reference of the benchmark, placeholders
        removed: the corpus for a small word-level tokenizer (sorted, so the order is stable)."""
        texts: set[str] = set()
        sets = [(m, t, s) for m in self.modalities for t in EMBEDDED_TASKS for s in EMBEDDED_SPLITS]
        sets.append((CROSS_MODALITY, "cross", "test"))
        for modality, task, split in sets:
            dataset = self._load(modality, task, split)[0]
            for messages, references in zip(dataset["messages"], dataset["references"]):
                for message in messages:
                    for line in message["content"].splitlines():
                        line = strip_placeholders(line)
                        if line:
                            texts.add(line)
                texts.update(references)
        return sorted(texts)
