"""Data for hf_mera: the sample format, the embedded benchmark, paper-dataset adapters, replay
sampling, the encoder-feature cache and the bad-data policy.

Names are imported on first use (PEP 562), so `import hf_mera.data` stays cheap: `datasets`,
PyAV, trimesh and safetensors load only when a function that needs them runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS = {
    # format
    "Sample": "format",
    "MediaItem": "format",
    "Message": "format",
    "TASKS": "format",
    "placeholder": "format",
    "make_sample": "format",
    "validate_sample": "format",
    "samples_to_dataset": "format",
    "dataset_to_samples": "format",
    "sample_features": "format",
    "empty_dataset": "format",
    "known_modalities": "format",
    # bad data
    "OnBadItem": "bad_data",
    "BadItem": "bad_data",
    "check_media": "bad_data",
    "find_bad_media": "bad_data",
    # replay
    "ReplayRecord": "replay",
    "sample_replay": "replay",
    "replay_for_baseline": "replay",
    "replay_for_realign": "replay",
    "replay_size": "replay",
    # feature cache
    "FeatureCache": "feature_cache",
    # batching (hf_mera/data/collator.py)
    "MultimodalCollator": "collator",
    # embedded benchmark
    "EmbeddedBenchmark": "embedded",
    "EmbeddedSizes": "embedded",
    "build_embedded_benchmark": "embedded",
    "text_only_baseline": "embedded",
    # paper datasets
    "AdapterConfig": "adapters",
    "PAPER_DATASETS": "adapters",
    "load_paper_dataset": "adapters",
    "load_paper_modality": "adapters",
    "register_dataset_adapter": "adapters",
    "get_dataset_adapter": "adapters",
}

__all__ = [
    "AdapterConfig",
    "BadItem",
    "EmbeddedBenchmark",
    "EmbeddedSizes",
    "FeatureCache",
    "MediaItem",
    "Message",
    "MultimodalCollator",
    "OnBadItem",
    "PAPER_DATASETS",
    "ReplayRecord",
    "Sample",
    "TASKS",
    "build_embedded_benchmark",
    "check_media",
    "dataset_to_samples",
    "empty_dataset",
    "find_bad_media",
    "get_dataset_adapter",
    "known_modalities",
    "load_paper_dataset",
    "load_paper_modality",
    "make_sample",
    "placeholder",
    "register_dataset_adapter",
    "replay_for_baseline",
    "replay_for_realign",
    "replay_size",
    "sample_features",
    "sample_replay",
    "samples_to_dataset",
    "text_only_baseline",
    "validate_sample",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static type checkers and IDEs see the real names
    from .adapters import (
        PAPER_DATASETS,
        AdapterConfig,
        get_dataset_adapter,
        load_paper_dataset,
        load_paper_modality,
        register_dataset_adapter,
    )
    from .bad_data import BadItem, OnBadItem, check_media, find_bad_media
    from .collator import MultimodalCollator
    from .embedded import EmbeddedBenchmark, EmbeddedSizes, build_embedded_benchmark, text_only_baseline
    from .feature_cache import FeatureCache
    from .format import (
        TASKS,
        MediaItem,
        Message,
        Sample,
        dataset_to_samples,
        empty_dataset,
        known_modalities,
        make_sample,
        placeholder,
        sample_features,
        samples_to_dataset,
        validate_sample,
    )
    from .replay import ReplayRecord, replay_for_baseline, replay_for_realign, replay_size, sample_replay
