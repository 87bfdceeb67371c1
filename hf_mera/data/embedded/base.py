"""What every generator of the embedded benchmark shares: the closed vocabulary, seeded random streams,
balanced answer schedules and the generator interface.

A generator belongs to its modality: `ModalitySpec.generator` (hf_mera.modalities) names it, so the
modality registry is the one table of modalities; `get_embedded_modality` reads it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..seeding import seeded_rng, stable_int  # noqa: F401 - re-exported for the generators

# One closed vocabulary for all modalities, so that a word-level tokenizer stays small and
# cross-modal questions ("do the image and the point cloud show the same color?") make sense.
# US spelling "color" because easy-VQA's real questions use it.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 200, 35),
}
SHAPES_2D = ("circle", "rectangle", "triangle")
NUMBER_WORDS = ("one", "two", "three", "four")

Attributes = dict[str, Any]


def balanced_choices(rng: np.random.Generator, options: Sequence[Any], n: int) -> list[Any]:
    """`n` draws from `options` with counts differing by at most one, in random order.

    Exact balance (not i.i.d. draws) keeps small test sets at chance for a text-only guesser.
    """
    if not options:
        raise ValueError("balanced_choices needs at least one option.")
    # A random rotation first, so that the options favoured by the remainder vary with the seed.
    offset = int(rng.integers(len(options))) if n % len(options) else 0
    picks = [options[(i + offset) % len(options)] for i in range(n)]
    order = rng.permutation(n)
    return [picks[i] for i in order]


def choose(rng: np.random.Generator, options: Sequence[Any], exclude: Any = None) -> Any:
    """One uniform draw from `options`, optionally excluding one value."""
    pool = [o for o in options if o != exclude]
    return pool[int(rng.integers(len(pool)))]


@dataclass(frozen=True)
class QuestionType:
    """A family of questions whose answers come from one closed set.

    Attributes:
        name: short name (stored in the metadata of each QA row).
        question: the question text (lower case, ends with "?").
        answers: the closed answer set; answers are balanced over it.
        attribute: the item attribute the answer is read from.
        requires: attribute values an item must have for the question to make sense
            (e.g. "which way does the shape move?" only for moving shapes).
    """

    name: str
    question: str
    answers: tuple[str, ...]
    attribute: str
    requires: tuple[tuple[str, Any], ...] = ()

    @property
    def chance(self) -> float:
        return 1.0 / len(self.answers)


@dataclass(frozen=True)
class QAItem:
    """A drawn QA example before its media file is written."""

    attributes: Attributes
    question_type: str
    question: str
    answer: str


class EmbeddedModality(ABC):
    """A generator of one modality's media, captions and balanced questions.

    Subclasses set `caption_prompt` (the benchmark's own caption instruction, part of its content) and
    implement `sample_attributes`, `write` and `caption`; `name` is set when the modality whose
    `ModalitySpec.generator` it is registers. Question types default to `question_types()`; a
    generator with its own question pool (the real easy-VQA questions) overrides `draw_qa`.
    """

    name: ClassVar[str]
    caption_prompt: ClassVar[str]

    def __init__(self, seed: int, options: Mapping[str, Any] | None = None) -> None:
        self.seed = seed
        self.options = dict(options or {})

    def reserve_for_train(self, attributes: Attributes) -> None:
        """Called for every train item before the val split is drawn. Generated media are new random
        draws (noise seeds, positions, continuous values), so no two items share a file and nothing
        needs reserving; a generator that draws from a fixed pool (the real easy-VQA images) records
        the item here and leaves it out of the val split."""
        return None

    def question_types(self) -> tuple[QuestionType, ...]:
        """The question families of this modality (may depend on options, e.g. spoken audio)."""
        return ()

    @abstractmethod
    def sample_attributes(self, rng: np.random.Generator, split: str, **constraints: Any) -> Attributes:
        """Random attributes of one item, with the given attributes fixed."""

    @abstractmethod
    def write(self, attributes: Attributes, folder: Path, stem: str, rng: np.random.Generator) -> str:
        """Writes the item's media file into `folder` and returns its file name."""

    @abstractmethod
    def caption(self, attributes: Attributes) -> str:
        """The reference caption of an item."""

    def caption_plan(self, rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
        """Constraints for `n` caption items; default: no constraints (attributes drawn at random)."""
        return [{} for _ in range(n)]

    def draw_qa(self, rng: np.random.Generator, split: str, n: int) -> list[QAItem]:
        """`n` QA items, question types balanced, answers balanced within each type."""
        types = list(self.question_types())
        if not types:
            return []
        order = balanced_choices(rng, types, n)
        # Answers are balanced within each type: draw each type's answers as one balanced batch.
        counts = {t.name: sum(1 for o in order if o.name == t.name) for t in types}
        answers = {t.name: iter(balanced_choices(rng, t.answers, counts[t.name])) for t in types}
        items: list[QAItem] = []
        for qtype in order:
            answer = next(answers[qtype.name])
            constraints = dict(qtype.requires)
            constraints[qtype.attribute] = answer
            attributes = self.sample_attributes(rng, split, **constraints)
            items.append(QAItem(attributes, qtype.name, qtype.question, answer))
        return items


def get_embedded_modality(name: str, where: str | None = None) -> type[EmbeddedModality]:
    """The generator class of modality `name` (its `ModalitySpec.generator`); a `ValueError` names the
    modalities that have one (after `where`, the config field) when `name` has none."""
    from hf_mera.modalities import MODALITY_REGISTRY  # the modalities import their generators from here

    spec = MODALITY_REGISTRY.get(name) if name in MODALITY_REGISTRY else None
    if spec is None or spec.generator is None:
        known = [m for m, s in MODALITY_REGISTRY.items() if s.generator is not None]
        prefix = f"{where}: " if where else ""
        raise ValueError(
            f"{prefix}unknown embedded-benchmark generator {name!r}; known: {known} "
            "(a modality has one when its ModalitySpec names a generator)."
        )
    return spec.generator


def embedded_modalities() -> tuple[str, ...]:
    """Every registered modality that has a generator, in the canonical (registration) order."""
    from hf_mera.modalities import MODALITY_REGISTRY

    return tuple(m for m, spec in MODALITY_REGISTRY.items() if spec.generator is not None)
