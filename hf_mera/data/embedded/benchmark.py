"""A built embedded benchmark, read back as sample-format datasets with absolute media paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..format import CROSS_MODALITY, samples_to_dataset, strip_placeholders
from .manifest import MANIFEST, annotation_name, read_manifest
from .spec import EMBEDDED_SPLITS, EMBEDDED_TASKS, EmbeddedSizes

if TYPE_CHECKING:
    from datasets import Dataset


class EmbeddedBenchmark:
    """A built embedded benchmark: sample-format datasets with absolute media paths.

    Args:
        root: the benchmark folder (with its `manifest.json`).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        manifest = read_manifest(self.root)
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
        key = annotation_name(modality, task, split)
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
        """The `task` ("caption" | "qa") set of `modality` in `split` ("train" | "val" | "test"); "val"
        is where hyper-parameters are chosen, never "test"."""
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

    def described_conversations(
        self,
        split: str = "train",
        tasks: tuple[str, ...] = EMBEDDED_TASKS,
        modalities: tuple[str, ...] | None = None,
    ) -> list[tuple[str, str]]:
        """Text-only `(user, answer)` turns of `split`'s items: the user turn is the item described in
        words (its reference caption, rendered from the attributes it was generated from) then the
        row's question or caption instruction; the answer is the row's. No media.

        `split="train"` is the corpus of the tiny LLM's instruction phase (#17); `"val"` measures
        whether the LLM answers questions about described items. Reads only `split`'s files."""
        from .base import get_embedded_modality

        if split not in EMBEDDED_SPLITS:
            raise ValueError(f"split must be one of {EMBEDDED_SPLITS}, got {split!r}.")
        conversations = []
        for modality in modalities or self.modalities:
            generator = get_embedded_modality(modality)(
                self.seed, {"speech_fraction": self.sizes.speech_fraction}
            )
            for task in tasks:
                dataset, metas = self._load(modality, task, split)
                for messages, meta in zip(dataset["messages"], metas):
                    prompt = strip_placeholders(messages[0]["content"]).strip()
                    description = generator.caption(meta["attributes"])
                    conversations.append((f"{description}\n{prompt}", messages[1]["content"]))
        return conversations

    def all_texts(self, splits: tuple[str, ...] = EMBEDDED_SPLITS) -> list[str]:
        """Every distinct prompt line, question, answer and reference of the given splits (the
        cross-modal set belongs to "test"), placeholders removed, sorted so the order is stable.

        All splits make the vocabulary of a small word-level tokenizer (a tokenizer may know the
        test vocabulary, as a pretrained one does); only `("train",)` may be a training corpus
        (`train_items` for the instruction phase).
        """
        unknown = set(splits) - set(EMBEDDED_SPLITS)
        if unknown:
            raise ValueError(f"Unknown split(s) {sorted(unknown)}; the benchmark has {EMBEDDED_SPLITS}.")
        texts: set[str] = set()
        sets = [(m, t, s) for m in self.modalities for t in EMBEDDED_TASKS for s in splits]
        if "test" in splits:
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


__all__ = ["EmbeddedBenchmark"]
