"""Readers for the paper's eight datasets (appendix B, Table 8) from local files.

    >>> from hf_mera.data.adapters import load_paper_dataset
    >>> coco = load_paper_dataset("mscoco", "/data/coco", test_size=1000, seed=0)
    >>> coco["train"][0]["messages"]

One module per dataset documents the files it reads and names its modality and task;
`paper_datasets()` (and `PAPER_DATASETS`, the paper's eight) gathers them per modality. A run's YAML gives each dataset's folder as `data_dir` (the one location
key; `adapter_config` refuses `root` and typos by name). Each adapter also says how its test split is
scored (`DatasetAdapter.metric`): CIDEr for captions, VQA accuracy for OK-VQA (ten annotator answers
per question), and the run's QA judge for the other QA sets.
"""

# Importing the modules registers the adapters.
from . import audiocaps, cap3d, cap3d_qa, clotho_aqa, mscoco, msvd, msvd_qa, okvqa  # noqa: F401
from .base import (
    ADAPTER_REGISTRY,
    LOCATION_FIELD,
    METRICS,
    AdapterConfig,
    DatasetAdapter,
    Record,
    adapter_config,
    check_paper_configs,
    get_dataset_adapter,
    load_paper_dataset,
    load_paper_modality,
    paper_datasets,
    paper_metrics,
    register_dataset_adapter,
)

# The paper's datasets per modality, (captioning, question answering), read from the adapters above.
PAPER_DATASETS = paper_datasets()

__all__ = [
    "ADAPTER_REGISTRY",
    "LOCATION_FIELD",
    "METRICS",
    "PAPER_DATASETS",
    "AdapterConfig",
    "DatasetAdapter",
    "Record",
    "adapter_config",
    "check_paper_configs",
    "get_dataset_adapter",
    "load_paper_dataset",
    "load_paper_modality",
    "paper_datasets",
    "paper_metrics",
    "register_dataset_adapter",
]
