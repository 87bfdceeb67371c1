"""Shared machinery of the paper-dataset adapters: config, base class, registry, file helpers.

An adapter reads one dataset of the paper (appendix B, Table 8) from local files in its published
format and returns a `DatasetDict` with "train" and "test" splits in the sample format. Each
adapter module documents the files and folder layout it expects; `AdapterConfig.files` and
`AdapterConfig.media_dir` override them.
"""

from __future__ import annotations

import csv
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...registry import Registry
from ..bad_data import BadItemLog, OnBadItem
from ..format import Sample, make_sample, samples_to_dataset
from ..seeding import seeded_rng

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

logger = logging.getLogger(__name__)

ADAPTER_SPLITS = ("train", "test")
# LLaVA's instruction for short-answer VQA.
QA_INSTRUCTION = "Answer the question using a single word or phrase."
# How a test split is scored (`hf_mera.evaluation.TASK_METRICS` holds each task's default).
METRICS = ("cider", "accuracy", "vqa_accuracy")
# The one key that says where a dataset lives; `root` (the name older configs used) is refused by
# name so that such a config fails before any training rather than being silently misread.
LOCATION_FIELD = "data_dir"


@dataclass
class AdapterConfig:
    """Where a paper dataset lives and how much of it to use."""

    data_dir: str = field(
        metadata={"help": "Folder with the dataset's annotation files (layout: see the adapter)."}
    )
    media_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder with the media files; defaults to the adapter's usual subfolder of data_dir."
        },
    )
    files: dict[str, str] = field(
        default_factory=dict,
        metadata={
            "help": "Annotation file names by role (e.g. {'train': 'my_train.csv'}), relative to data_dir."
        },
    )
    test_size: int | None = field(
        default=1000, metadata={"help": "Test examples sampled with `seed` (the paper: 1K); None keeps all."}
    )
    train_size: int | None = field(
        default=None,
        metadata={
            "help": "Training examples sampled with `seed` (the paper: Cap3D 50K, Cap3D-QA 30K); None keeps all."
        },
    )
    seed: int = field(
        default=0, metadata={"help": "Seed of the test/train subsampling (and of seeded splits)."}
    )
    on_bad_item: str = field(
        default="skip",
        metadata={
            "help": "'skip' drops rows with a missing media file or a malformed record (and warns "
            "with the count); 'raise' raises ValueError naming the path and row."
        },
    )
    max_caption_chars: int | None = field(
        default=100, metadata={"help": "Cap3D only: drop captions longer than this (the paper's filter)."}
    )
    metric: str | None = field(
        default=None,
        metadata={
            "help": "How the test split is scored: 'cider', 'accuracy' (the QA judge accepts any reference) "
            "or 'vqa_accuracy' (VQA accuracy over annotator answers); None = the adapter's own choice."
        },
    )

    def __post_init__(self) -> None:
        OnBadItem.parse(self.on_bad_item)
        if self.metric is not None and self.metric not in METRICS:
            raise ValueError(
                f"AdapterConfig.metric must be one of {', '.join(METRICS)} or None, got {self.metric!r}."
            )
        for name in ("test_size", "train_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"AdapterConfig.{name} must be a positive int or None, got {value!r}.")


@dataclass
class Record:
    """One example read from an annotation file, before its media file is located."""

    row: int  # 0-based index of the record in its annotation file (reported for bad items)
    key: str  # unique within the split; becomes the end of the sample id
    media: list[str]  # candidate paths of the one media file, the first existing one is used
    answer: str
    references: list[str]
    question: str = ""


class DatasetAdapter(ABC):
    """Reads one paper dataset into sample-format train and test splits.

    Subclasses set `modality`, `task` and `default_files` (role -> path relative to data_dir,
    globs allowed) and implement `records(split, log)`.
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    task: ClassVar[str]
    default_files: ClassVar[dict[str, str]] = {}
    default_media_dir: ClassVar[str] = ""
    # How the test split is scored when `AdapterConfig.metric` is None: captions by CIDEr, QA by the
    # run's judge (the paper's GPT-4o mini, or exact match offline); datasets with ten annotator
    # answers per question override it with "vqa_accuracy".
    metric: ClassVar[str | None] = None

    @classmethod
    def default_metric(cls) -> str:
        return cls.metric or ("cider" if cls.task == "caption" else "accuracy")

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)

    @property
    def test_metric(self) -> str:
        """The metric of the test split: `AdapterConfig.metric`, else the adapter's own choice."""
        return self.config.metric or self.default_metric()

    # ---- what each adapter implements -------------------------------------------------------
    @abstractmethod
    def records(self, split: str, log: BadItemLog) -> Iterable[Record]:
        """The split's records; malformed ones are reported to `log` and left out."""

    # ---- shared helpers ---------------------------------------------------------------------
    @property
    def media_dir(self) -> Path:
        return (
            Path(self.config.media_dir) if self.config.media_dir else self.data_dir / self.default_media_dir
        )

    def file(self, role: str) -> Path:
        """The annotation file of `role`; FileNotFoundError names what was looked for."""
        pattern = self.config.files.get(role, self.default_files.get(role))
        if pattern is None:
            raise ValueError(f"{self.name}: no annotation file configured for role {role!r}.")
        matches = sorted(self.data_dir.glob(pattern)) if any(c in pattern for c in "*?[") else []
        path = matches[0] if matches else self.data_dir / pattern
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.name}: annotation file for {role!r} not found: {path} "
                f"(set AdapterConfig.files[{role!r}] to its name relative to data_dir)."
            )
        return path

    def prompt(self, question: str = "") -> str:
        if self.task == "caption":
            from hf_mera.modalities import get_modality  # noqa: PLC0415 - the modality owns its prompt

            return get_modality(self.modality, where=f"{self.name}.modality").caption_prompt
        return f"{question}\n{QA_INSTRUCTION}"

    # ---- the pipeline -----------------------------------------------------------------------
    def located_records(self, split: str) -> list[tuple[Record, str]]:
        """The split's records with the path of their media file; the rest are reported as bad items."""
        log = BadItemLog(self.config.on_bad_item, source=f"{self.name} ({split})")
        exists: dict[str, bool] = {}  # many records share a file (e.g. ~40 captions per MSVD clip)
        kept: list[tuple[Record, str]] = []
        for record in self.records(split, log):
            found = None
            for candidate in record.media:
                if candidate not in exists:
                    exists[candidate] = Path(candidate).is_file()
                if exists[candidate]:
                    found = candidate
                    break
            if found is None:
                log.report(record.row, record.media[0], "media file not found", id=record.key)
                continue
            kept.append((record, found))
        log.finish()
        return kept

    def select(self, split: str, kept: list[tuple[Record, str]]) -> list[tuple[Record, str]]:
        """The records a split keeps: a seeded subsample of `test_size` / `train_size`."""
        size = self.config.test_size if split == "test" else self.config.train_size
        return subsample(kept, size, self.config.seed, self.name, split)

    def load_split(self, split: str) -> list[Sample]:
        """Records of `split` with an existing media file, subsampled per the config, as samples."""
        return [
            make_sample(
                id=f"{self.name}/{split}/{record.key}",
                modality=self.modality,
                task=self.task,
                media=[(self.modality, path)],
                prompt=self.prompt(record.question),
                answer=record.answer,
                references=record.references,
                question=record.question,
            )
            for record, path in self.select(split, self.located_records(split))
        ]

    def load(self) -> DatasetDict:
        """The "train" and "test" splits as sample-format datasets."""
        from datasets import DatasetDict

        return DatasetDict({split: samples_to_dataset(self.load_split(split)) for split in ADAPTER_SPLITS})


def subsample(items: list[Any], size: int | None, seed: int, *names: str) -> list[Any]:
    """`size` items drawn without replacement with a seeded stream per (seed, names), in their
    original order; all of them when `size` is None or not smaller."""
    if size is None or size >= len(items):
        return items
    rng = seeded_rng(seed, *names)
    return [items[i] for i in sorted(rng.choice(len(items), size=size, replace=False))]


def majority(answers: list[str]) -> str:
    """The most frequent answer; ties go to the one given first."""
    counts: dict[str, int] = {}
    for answer in answers:
        counts[answer] = counts.get(answer, 0) + 1
    return max(counts, key=lambda a: (counts[a], -answers.index(a)))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def read_csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(0-based data row, row dict) of a headed CSV; ValueError when a required column is missing."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (found {reader.fieldnames}).")
        yield from enumerate(reader)


def with_extensions(stem: Path, extensions: tuple[str, ...]) -> list[str]:
    """`stem` itself when it has an extension, else `stem` with each extension."""
    if stem.suffix:
        return [str(stem)]
    return [str(stem.with_name(stem.name + ext)) for ext in extensions]


ADAPTER_REGISTRY: Registry[type[DatasetAdapter]] = Registry(
    "dataset adapter", base=DatasetAdapter, on_register=lambda name, cls: setattr(cls, "name", name)
)


def register_dataset_adapter(name: str) -> Callable[[type[DatasetAdapter]], type[DatasetAdapter]]:
    """Class decorator adding an adapter to the registry; a repeated name is a ValueError."""
    return ADAPTER_REGISTRY.register(name)


def get_dataset_adapter(name: str, where: str | None = None) -> type[DatasetAdapter]:
    """The adapter class of `name`; ValueError lists the known ones (after `where`, the config field)."""
    return ADAPTER_REGISTRY.get(name, where=where)


def adapter_config(name: str, fields: Mapping[str, Any], where: str = "data.paper") -> AdapterConfig:
    """`AdapterConfig` of dataset `name` from a config mapping (a YAML section), checked by name.

    ValueError names `<where>.<name>.<field>` for an unknown dataset, a missing `data_dir`, `root`
    (say `data_dir`) or any other unknown field, listing the accepted ones.
    """
    get_dataset_adapter(name, where=where)  # an unknown dataset name fails here, listing the known ones
    if not isinstance(fields, Mapping):
        raise ValueError(f"{where}.{name} must map AdapterConfig fields to values, got {fields!r}.")
    known = [f.name for f in dataclass_fields(AdapterConfig)]
    for key in fields:
        if key in known:
            continue
        if key in ("root", "path", "dir", "folder"):
            raise ValueError(
                f"{where}.{name}.{key}: the dataset's folder is given as '{LOCATION_FIELD}' "
                f"(rename '{key}' to '{LOCATION_FIELD}')."
            )
        raise ValueError(f"{where}.{name}.{key}: unknown field; known: {', '.join(known)}.")
    if LOCATION_FIELD not in fields or not fields[LOCATION_FIELD]:
        raise ValueError(f"{where}.{name}.{LOCATION_FIELD}: missing; set it to the dataset's folder.")
    try:
        return AdapterConfig(**fields)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}.{name}: {error}") from None


def check_paper_configs(configs: Mapping[str, Mapping[str, Any]], where: str = "data.paper") -> None:
    """Checks every dataset section of a run's `data.paper` (see `adapter_config`) before any loading."""
    if not isinstance(configs, Mapping):
        raise ValueError(f"{where} must map dataset names to their settings, got {configs!r}.")
    for name, fields in configs.items():
        adapter_config(name, fields, where)


def paper_datasets() -> dict[str, tuple[str, ...]]:
    """The registered datasets of each modality, `(captioning, question answering)`, read from each
    adapter's own `modality` and `task`; modalities in the modality registry's order (the paper's)."""
    from hf_mera.modalities import MODALITY_REGISTRY  # noqa: PLC0415 - its order, not a table here

    from . import ADAPTER_REGISTRY  # noqa: PLC0415 - the package registers every adapter

    tasks = ("caption", "qa")
    by_modality: dict[str, dict[str, str]] = {}
    for name, adapter in ADAPTER_REGISTRY.items():
        by_modality.setdefault(adapter.modality, {})[adapter.task] = name
    order = list(MODALITY_REGISTRY)
    modalities = sorted(by_modality, key=lambda m: (order.index(m) if m in order else len(order), m))
    return {m: tuple(by_modality[m][t] for t in tasks if t in by_modality[m]) for m in modalities}


def load_paper_dataset(name: str, data_dir: str | Path, **config: Any) -> DatasetDict:
    """Reads dataset `name` (e.g. "mscoco") from `data_dir`; `config` are `AdapterConfig` fields."""
    adapter = get_dataset_adapter(name)(AdapterConfig(data_dir=str(data_dir), **config))
    return adapter.load()


def load_paper_modality(
    modality: str,
    configs: Mapping[str, Mapping[str, Any]],
    seed: int = 0,
    on_bad_item: OnBadItem | str = "skip",
) -> dict[str, dict[str, Dataset]]:
    """The paper's caption and QA datasets of `modality` (`paper_datasets()`), by split and task.

    Args:
        modality: "image", "video", "audio" or "point_cloud".
        configs: per dataset name, its `AdapterConfig` fields (at least `data_dir`), e.g.
            `{"mscoco": {"data_dir": "/data/coco"}, "okvqa": {"data_dir": "/data/okvqa"}}`.
        seed, on_bad_item: defaults for datasets whose config does not set them.

    Returns:
        `{"train": {"caption": ds, "qa": ds}, "test": {"caption": ds, "qa": ds}}`.
    """
    datasets = paper_datasets()
    if modality not in datasets:
        raise ValueError(f"No paper datasets for modality {modality!r}; known: {', '.join(datasets)}.")
    splits: dict[str, dict[str, Dataset]] = {split: {} for split in ADAPTER_SPLITS}
    for name in datasets[modality]:
        if name not in configs:
            raise ValueError(
                f"data.paper.{name}: missing; the paper's {modality} data needs it with "
                f"'{LOCATION_FIELD}' (got configs for: {', '.join(configs) or 'none'})."
            )
        fields = {"seed": seed, "on_bad_item": OnBadItem.parse(on_bad_item).value, **configs[name]}
        adapter = get_dataset_adapter(name)
        data = adapter(adapter_config(name, fields)).load()
        for split in ADAPTER_SPLITS:
            splits[split][adapter.task] = data[split]
    return splits


def paper_metrics(modality: str, configs: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, str]:
    """{task: metric} of the paper's test sets of `modality`: each adapter's choice, or the
    `metric` its config sets (e.g. {"caption": "cider", "qa": "vqa_accuracy"} for images)."""
    configs = configs or {}
    metrics = {}
    for name in paper_datasets()[modality]:
        adapter = get_dataset_adapter(name)
        metrics[adapter.task] = (configs.get(name) or {}).get("metric") or adapter.default_metric()
    return metrics
