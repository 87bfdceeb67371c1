"""Where a run's datasets come from: the embedded benchmark (offline default) or the paper's datasets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, concatenate_datasets

from hf_mera.continual.curriculum import DataSection
from hf_mera.registry import Registry

TASKS = ("caption", "qa")
EVALUATION_SPLITS = ("test", "val")


@dataclass
class DataSource:
    """Per modality: train sets by task, test sets by task; optionally a cross-modal test set and
    validation sets by task (`val_sets`: where hyper-parameters are chosen, never on test; #17).

    `description["benchmark_hash"]` names the data every number of the run was measured on.
    """

    train_sets: dict[str, dict[str, Dataset]]
    test_sets: dict[str, dict[str, Dataset]]
    cross_modal: Dataset | None = None
    # Every text of every split (the embedded source): the vocabulary a tokenizer may know.
    texts: list[str] | None = None
    description: dict[str, Any] | None = None
    # modality -> task -> metric of its test set where a dataset chose one (OK-VQA: "vqa_accuracy").
    metrics: dict[str, dict[str, str]] | None = None
    # The texts of the training split only: the one corpus a training phase (the tiny LLM's text
    # pre-training) may read. No test question or reference is ever trained on (issue #17).
    training_texts: list[str] | None = None
    # Text-only (user, answer) turns of the train split's items described in words (the embedded
    # source): the corpus of the tiny LLM's instruction phase. Train split only, like training_texts.
    instruction_conversations: list[tuple[str, str]] | None = None
    # modality -> task -> validation set (the embedded source; None where the source has none).
    val_sets: dict[str, dict[str, Dataset]] | None = None

    def train(self, modality: str, tasks: tuple[str, ...] = TASKS) -> Dataset:
        self._check(modality)
        parts = [self.train_sets[modality][t] for t in tasks if t in self.train_sets[modality]]
        if not parts:
            raise ValueError(f"Modality {modality!r} has no training data for tasks {tasks}.")
        return concatenate_datasets(parts) if len(parts) > 1 else parts[0]

    def test(self, modality: str) -> dict[str, Dataset]:
        self._check(modality)
        return self.test_sets[modality]

    def val(self, modality: str) -> dict[str, Dataset]:
        self._check(modality)
        if not self.val_sets or modality not in self.val_sets:
            source = (self.description or {}).get("source", "this data source")
            raise ValueError(
                f"evaluation.split: 'val' needs validation sets; {source!r} has none for {modality!r}."
            )
        return self.val_sets[modality]

    def split(self, modality: str, split: str) -> dict[str, Dataset]:
        """`modality`'s sets by task of `split` ("test" | "val")."""
        if split not in EVALUATION_SPLITS:
            raise ValueError(f"evaluation.split must be one of {EVALUATION_SPLITS}, got {split!r}.")
        return self.test(modality) if split == "test" else self.val(modality)

    def metric(self, modality: str, task: str) -> str | None:
        """The metric of `modality`'s `task` test set; None: the task's default (`TASK_METRICS`)."""
        return (self.metrics or {}).get(modality, {}).get(task)

    @property
    def benchmark_hash(self) -> str:
        return (self.description or {})["benchmark_hash"]

    def _check(self, modality: str) -> None:
        if modality not in self.train_sets:
            raise ValueError(
                f"No data for modality {modality!r}; the data source has {sorted(self.train_sets)}."
            )


DataSourceLoader = Callable[[DataSection, list[str], int], DataSource]
DATA_SOURCES: Registry[DataSourceLoader] = Registry("data source")


def register_data_source(name: str) -> Callable[[DataSourceLoader], DataSourceLoader]:
    """Decorator: `fn(section, modalities, seed) -> DataSource` becomes `data.source: name`."""
    return DATA_SOURCES.register(name)


def load_data_source(section: DataSection, modalities: list[str], seed: int) -> DataSource:
    return DATA_SOURCES.get(section.source, where="data.source")(section, modalities, seed)


@register_data_source("embedded")
def _embedded(section: DataSection, modalities: list[str], seed: int) -> DataSource:
    from hf_mera.continual.schema import from_dict
    from hf_mera.data.embedded import EmbeddedSizes, build_embedded_benchmark

    sizes = from_dict(EmbeddedSizes, section.embedded)
    bench = build_embedded_benchmark(
        root=Path(section.root) if section.root else None,
        seed=seed,
        sizes=sizes,
        modalities=tuple(modalities),
    )
    train = {m: {t: bench.dataset(m, t, "train") for t in TASKS} for m in modalities}
    test = {m: {t: bench.dataset(m, t, "test") for t in TASKS} for m in modalities}
    val = {m: {t: bench.dataset(m, t, "val") for t in TASKS} for m in modalities}
    cross = bench.cross_modal_test() if len(modalities) > 1 else None
    if cross is not None and len(cross) == 0:  # no question family combines these modalities
        cross = None
    description = {"source": "embedded", "root": str(bench.root), "benchmark_hash": bench.content_hash}
    return DataSource(
        train,
        test,
        cross,
        bench.all_texts(),
        description,
        training_texts=bench.all_texts(("train",)),
        val_sets=val,
        instruction_conversations=bench.described_conversations("train"),
    )


@register_data_source("paper")
def _paper(section: DataSection, modalities: list[str], seed: int) -> DataSource:
    from hf_mera.data.adapters import load_paper_modality, paper_metrics

    train, test = {}, {}
    for modality in modalities:
        splits = load_paper_modality(modality, section.paper, seed=seed, on_bad_item=section.on_bad_item)
        train[modality] = splits["train"]
        test[modality] = splits["test"]
    return DataSource(
        train,
        test,
        None,
        None,
        {"source": "paper", "benchmark_hash": samples_hash(train, test)},
        metrics={m: paper_metrics(m, section.paper) for m in modalities},
    )


def samples_hash(*splits: dict[str, dict[str, Dataset]]) -> str:
    """SHA-256 (first 12 hex digits) over every sample of the given sets, in order: their messages,
    references and media paths. Media bytes are not read (the paper's datasets are large), so this
    names the annotations and the files they point to, not the files' content."""
    digest = hashlib.sha256()
    for split in splits:
        for modality in sorted(split):
            for task in sorted(split[modality]):
                digest.update(f"{modality}/{task}\0".encode())
                for row in split[modality][task]:
                    digest.update(json.dumps(row, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]


__all__ = ["DataSource", "EVALUATION_SPLITS", "load_data_source", "register_data_source", "TASKS"]
