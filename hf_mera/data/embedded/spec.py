"""What an embedded benchmark is made of: generator version, modalities, sizes, and the spec whose
hash names its cache folder. Two builds with the same spec are byte-identical."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import embedded_modalities, get_embedded_modality

# Bump whenever generated content changes: the version is part of the cache folder's name.
# 2: spoken words from the shipped recordings on every machine (1 had them only with espeak-ng).
# 3: a validation split ("val"); the train and test sets of a spec are those version 2 built (#17).
GENERATOR_VERSION = "3"
EMBEDDED_TASKS = ("caption", "qa")
# Generation order: train before val, so val can leave out the real images train already uses.
EMBEDDED_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class EmbeddedSizes:
    """How many examples the embedded benchmark has (per modality unless said otherwise)."""

    caption_train: int = field(default=400, metadata={"help": "Caption examples per modality, train split."})
    qa_train: int = field(default=400, metadata={"help": "QA examples per modality, train split."})
    caption_val: int = field(
        default=60,
        metadata={"help": "Caption examples per modality, validation split (choose hyper-parameters here)."},
    )
    qa_val: int = field(
        default=60,
        metadata={"help": "QA examples per modality, validation split (choose hyper-parameters here)."},
    )
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
        """The number of examples of `task` ("caption" | "qa") in `split` ("train" | "val" | "test")."""
        return getattr(self, f"{task}_{split}")


def canonical_modalities(modalities: Sequence[str] | None = None) -> list[str]:
    """`modalities` (default: every modality with a generator) in one fixed order, the modality
    registry's (the paper's four first, in the paper's order): a curriculum's order (sequential or
    reverse) does not change the benchmark, so both orders train and test on the same data."""
    names = set(embedded_modalities() if modalities is None else modalities)
    for name in names:
        get_embedded_modality(name)  # ValueError naming the known ones
    if not names:
        raise ValueError("The embedded benchmark needs at least one modality.")
    order = embedded_modalities()
    return sorted(names, key=order.index)


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


__all__ = [
    "EMBEDDED_SPLITS",
    "EMBEDDED_TASKS",
    "GENERATOR_VERSION",
    "EmbeddedSizes",
    "benchmark_spec",
    "canonical_modalities",
    "spec_hash",
]
