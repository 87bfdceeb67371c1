"""The embedded benchmark: a small offline image/video/audio/point-cloud benchmark built on first use.

    >>> from hf_mera.data.embedded import build_embedded_benchmark
    >>> bench = build_embedded_benchmark(seed=0)           # ~/.cache/hf_mera/embedded/v1-0-<hash>
    >>> bench.dataset("video", "qa", "train")[0]["messages"]
    >>> bench.cross_modal_test()

One module per modality registers its generator; `builder` builds the benchmark (with `spec`, `cache`,
`manifest` and `writer`) and `benchmark` reads it back.
"""

# Importing the generator modules registers them.
from . import audio, image, point_cloud, video  # noqa: F401
from .base import (
    EMBEDDED_MODALITY_REGISTRY,
    EmbeddedModality,
    QuestionType,
    get_embedded_modality,
    register_embedded_modality,
)
from .builder import (
    DEFAULT_MODALITIES,
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
    "DEFAULT_MODALITIES",
    "EMBEDDED_MODALITY_REGISTRY",
    "GENERATOR_VERSION",
    "CrossFamily",
    "EmbeddedBenchmark",
    "EmbeddedModality",
    "EmbeddedSizes",
    "QuestionType",
    "TextOnlyScore",
    "build_embedded_benchmark",
    "default_benchmark_dir",
    "default_cache_root",
    "get_embedded_modality",
    "register_embedded_modality",
    "text_only_baseline",
]
