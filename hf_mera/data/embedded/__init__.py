"""The embedded benchmark: a small offline image/video/audio/point-cloud benchmark built on first use.

    >>> from hf_mera.data.embedded import build_embedded_benchmark
    >>> bench = build_embedded_benchmark(seed=0)           # ~/.cache/hf_mera/embedded/v1-0-<hash>
    >>> bench.dataset("video", "qa", "train")[0]["messages"]
    >>> bench.cross_modal_test()

One module per modality holds its generator, which its `ModalitySpec` (hf_mera.modalities) names;
`builder` builds the benchmark (with `spec`, `cache`, `manifest` and `writer`) and `benchmark` reads
it back.
"""

from .base import EmbeddedModality, QuestionType, embedded_modalities, get_embedded_modality
from .builder import (
    GENERATOR_VERSION,
    EmbeddedBenchmark,
    EmbeddedSizes,
    build_embedded_benchmark,
    default_benchmark_dir,
    default_cache_root,
)
from .checks import TextOnlyScore, text_only_baseline
from .cross_modal import CROSS_FAMILIES, CrossFamily

__all__ = [
    "CROSS_FAMILIES",
    "GENERATOR_VERSION",
    "CrossFamily",
    "EmbeddedBenchmark",
    "EmbeddedModality",
    "EmbeddedSizes",
    "QuestionType",
    "TextOnlyScore",
    "build_embedded_benchmark",
    "embedded_modalities",
    "default_benchmark_dir",
    "default_cache_root",
    "get_embedded_modality",
    "text_only_baseline",
]
