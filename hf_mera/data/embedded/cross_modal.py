"""Cross-modal test questions of the embedded benchmark, in the spirit of MCUB-4 (Chen et al., 2024).

Each question takes 2-4 inputs of different modalities and can only be answered by looking at all
of them: comparing colours across modalities, finding which input shows a shape, spotting the odd
one out, or checking one fact per input in a four-input conjunction. Answers are balanced within
each family, and the question text is drawn independently of the answer, so text alone is chance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import (
    COLORS,
    NUMBER_WORDS,
    SHAPES_2D,
    Attributes,
    EmbeddedModality,
    balanced_choices,
    choose,
)
from .point_cloud import SHAPES_3D
from .video import DIRECTIONS

# (modality, attribute constraints) per input, in placeholder order, and the question text.
CrossDraw = tuple[list[tuple[str, dict[str, Any]]], str]


@dataclass(frozen=True)
class CrossFamily:
    """A family of cross-modal questions: the modalities it needs, its answers, and how to draw one."""

    name: str
    modalities: tuple[str, ...]
    answers: tuple[str, ...]
    draw: Callable[[np.random.Generator, str], CrossDraw]

    @property
    def chance(self) -> float:
        return 1.0 / len(self.answers)


_COLOR_PAIRS = (("image", "video"), ("image", "point_cloud"), ("video", "point_cloud"))
_ODD_ONE = ("image", "video", "point_cloud")


def _colored(modality: str, color: str) -> dict[str, Any]:
    # Video colour questions are about shapes that keep their colour, i.e. moving ones.
    return {"color": color, "motion": "move"} if modality == "video" else {"color": color}


def _spoken(modality: str) -> str:
    from hf_mera.modalities import get_modality  # the modalities import the generators from here

    return get_modality(modality).spoken_name


def _same_color(rng: np.random.Generator, answer: str) -> CrossDraw:
    first, second = _COLOR_PAIRS[int(rng.integers(len(_COLOR_PAIRS)))]
    color = choose(rng, tuple(COLORS))
    other = color if answer == "yes" else choose(rng, tuple(COLORS), exclude=color)
    question = f"do the {_spoken(first)} and the {_spoken(second)} show the same color?"
    return [(first, _colored(first, color)), (second, _colored(second, other))], question


def _which_shape(rng: np.random.Generator, answer: str) -> CrossDraw:
    shape = choose(rng, SHAPES_2D)
    other = choose(rng, SHAPES_2D, exclude=shape)
    shapes = {"image": shape if answer == "image" else other, "video": shape if answer == "video" else other}
    question = f"which input shows a {shape} the image or the video?"
    return [("image", {"shape": shapes["image"]}), ("video", {"shape": shapes["video"]})], question


def _odd_color(rng: np.random.Generator, answer: str) -> CrossDraw:
    color = choose(rng, tuple(COLORS))
    odd = choose(rng, tuple(COLORS), exclude=color)
    odd_modality = {_spoken(m): m for m in _ODD_ONE}[answer]
    inputs = [(m, _colored(m, odd if m == odd_modality else color)) for m in _ODD_ONE]
    return inputs, "which of the image the video and the point cloud has a different color?"


def _all_four(rng: np.random.Generator, answer: str) -> CrossDraw:
    facts = {
        "image": ("color", choose(rng, tuple(COLORS))),
        "video": ("direction", choose(rng, DIRECTIONS)),
        "audio": ("count", choose(rng, NUMBER_WORDS)),
        "point_cloud": ("shape", choose(rng, SHAPES_3D)),
    }
    question = (
        f"is the image {facts['image'][1]} and does the video move {facts['video'][1]} and are there "
        f"{facts['audio'][1]} beeps and is the point cloud a {facts['point_cloud'][1]}?"
    )
    # "no": exactly one input contradicts its clause, so that every input has to be checked.
    wrong = list(facts)[int(rng.integers(len(facts)))] if answer == "no" else None
    values = {
        "image": tuple(COLORS),
        "video": DIRECTIONS,
        "audio": NUMBER_WORDS,
        "point_cloud": SHAPES_3D,
    }
    inputs = []
    for modality, (attribute, value) in facts.items():
        if modality == wrong:
            value = choose(rng, values[modality], exclude=value)
        constraints: dict[str, Any] = {attribute: value}
        if modality == "video":
            constraints["motion"] = "move"
        if modality == "audio":
            constraints["kind"] = "beeps"
        inputs.append((modality, constraints))
    return inputs, question


CROSS_FAMILIES: tuple[CrossFamily, ...] = (
    CrossFamily("same_color", ("image", "video", "point_cloud"), ("yes", "no"), _same_color),
    CrossFamily("which_shape", ("image", "video"), ("image", "video"), _which_shape),
    CrossFamily("odd_color", _ODD_ONE, ("image", "video", "point cloud"), _odd_color),
    CrossFamily("all_four", ("image", "video", "audio", "point_cloud"), ("yes", "no"), _all_four),
)


@dataclass(frozen=True)
class CrossItem:
    """A drawn cross-modal question before its media files are written."""

    family: str
    inputs: list[tuple[str, Attributes]]
    question: str
    answer: str


def available_families(modalities: tuple[str, ...] | list[str]) -> tuple[CrossFamily, ...]:
    """The families whose inputs are all among `modalities`."""
    return tuple(f for f in CROSS_FAMILIES if set(f.modalities) <= set(modalities))


def draw_cross_items(
    rng: np.random.Generator, n: int, generators: Mapping[str, EmbeddedModality]
) -> list[CrossItem]:
    """`n` cross-modal items over the families the given generators allow; families and answers balanced.

    Image inputs use the image colours shared with video and point clouds (`COLORS`).
    """
    families = available_families(tuple(generators))
    if not families:
        return []
    order = balanced_choices(rng, list(families), n)
    counts = {f.name: sum(1 for o in order if o.name == f.name) for f in families}
    answers = {f.name: iter(balanced_choices(rng, f.answers, counts[f.name])) for f in families}
    items = []
    for family in order:
        answer = next(answers[family.name])
        draws, question = family.draw(rng, answer)
        inputs = [(m, generators[m].sample_attributes(rng, "cross", **c)) for m, c in draws]
        items.append(CrossItem(family.name, inputs, question, answer))
    return items
