"""Generates one benchmark's annotation files and media into a folder, set by set.

Every set draws from its own random stream (`seeded_rng(seed, modality, task, split)`), so a set's
content does not depend on which other modalities or sets are built: adding the val split left every
train and test set as it was. The val split is disjoint from both: generated media come from their
own random draws, and the real easy-VQA images of val are train-pool images the train split does not
use (`EmbeddedModality.reserve_for_train`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..format import CROSS_MODALITY, make_sample
from ..seeding import seeded_rng
from .base import EmbeddedModality
from .cross_modal import available_families, draw_cross_items
from .manifest import annotation_name
from .spec import EMBEDDED_SPLITS, EMBEDDED_TASKS, EmbeddedSizes


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Not JSON serialisable: {type(value).__name__}")


class BenchmarkWriter:
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
        if split == "train":  # the val split must not reuse these media (disjoint from train)
            for attributes, *_ in drawn:
                generator.reserve_for_train(attributes)
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
        self._write_lines(annotation_name(modality, task, split), lines)
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
        self._write_lines(annotation_name(CROSS_MODALITY, "cross", "test"), lines)
        return len(lines)

    def _write_lines(self, name: str, lines: list[str]) -> None:
        (self.folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


__all__ = ["BenchmarkWriter"]
