"""Image part of the embedded benchmark: the real easy-VQA images (MIT) and its real questions.

easy-VQA (https://github.com/vzhou842/easy-VQA, `pip install easy-vqa`) ships 4,000 train and 1,000
test 64x64 PNGs of one shape (circle, rectangle, triangle) in one of 8 colours, and ~48 k
questions. Shape and colour of each image are not stored as labels; they are read back from the
questions it was asked about (e.g. "what color is the circle?" -> "red"). Images whose shape or
colour no question reveals are left out.
"""

from __future__ import annotations

import functools
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    SHAPES_2D,
    Attributes,
    EmbeddedModality,
    QAItem,
    QuestionType,
    balanced_choices,
    choose,
)

EASY_VQA_COLORS = ("black", "blue", "brown", "gray", "green", "red", "teal", "yellow")
YES_NO = ("yes", "no")
_NEGATIONS = {"not", "no"}
# Easy-VQA has a train and a test split; our "cross" (cross-modal test) images come from its test split,
# our "val" images from its train split, less every image our train split uses (disjoint from train).
_EASY_VQA_SPLIT = {"train": "train", "val": "train", "test": "test", "cross": "test"}


@dataclass
class EasyVQAPool:
    """One easy-VQA split: images with known shape and colour, and the questions asked about them."""

    images: dict[int, dict[str, str]]  # image id -> {"shape", "color", "path"}
    # (question type, answer) -> question text -> image ids with that answer
    questions: dict[tuple[str, str], dict[str, list[int]]]


def _question_type(answer: str) -> str | None:
    if answer in SHAPES_2D:
        return "shape"
    if answer in EASY_VQA_COLORS:
        return "color"
    if answer in YES_NO:
        return "yes_no"
    return None


def _attributes_from_questions(texts, answers, image_ids) -> dict[int, dict[str, str]]:
    """Shape and colour of each image, read from its questions and answers."""
    known: dict[int, dict[str, str]] = defaultdict(dict)
    for text, answer, image_id in zip(texts, answers, image_ids):
        words = text.rstrip("?").split()
        facts: list[str] = []
        if answer in SHAPES_2D or answer in EASY_VQA_COLORS:
            # "what is the blue shape?" -> rectangle: the answer and any attribute named in the question hold.
            facts = [answer] + [w for w in words if w in SHAPES_2D or w in EASY_VQA_COLORS]
        elif answer in YES_NO:
            # "is there not a red shape?" -> no: the named attribute holds when yes XOR negated.
            if (answer == "yes") != bool(_NEGATIONS & set(words)):
                facts = [w for w in words if w in SHAPES_2D or w in EASY_VQA_COLORS]
        for fact in facts:
            known[image_id]["shape" if fact in SHAPES_2D else "color"] = fact
    return known


@functools.lru_cache(maxsize=2)
def load_easy_vqa_pool(split: str) -> EasyVQAPool:
    """Reads easy-VQA's `split` ("train" or "test") from the installed package."""
    try:
        import easy_vqa
    except ImportError as error:  # a declared dependency, but say what to install when it is missing
        raise ImportError("The image part of the embedded benchmark needs `pip install easy-vqa`.") from error
    if split == "train":
        texts, answers, image_ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    else:
        texts, answers, image_ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    known = _attributes_from_questions(texts, answers, image_ids)
    images = {
        image_id: {"shape": facts["shape"], "color": facts["color"], "path": paths[image_id]}
        for image_id, facts in known.items()
        if "shape" in facts and "color" in facts and image_id in paths
    }
    questions: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for text, answer, image_id in zip(texts, answers, image_ids):
        qtype = _question_type(answer)
        if qtype is not None and image_id in images:
            questions[(qtype, answer)][text].append(image_id)
    return EasyVQAPool(images=images, questions={k: dict(v) for k, v in questions.items()})


class ImageGenerator(EmbeddedModality):
    """Real easy-VQA images; captions "a red circle"; its real questions with balanced answers."""

    caption_prompt = "describe the image"
    QUESTION_TYPES = (
        QuestionType("shape", "", SHAPES_2D, "shape"),
        QuestionType("color", "", EASY_VQA_COLORS, "color"),
        QuestionType("yes_no", "", YES_NO, ""),
    )

    def __init__(self, seed: int, options=None) -> None:
        super().__init__(seed, options)
        self._train_ids: set[int] = set()
        self._val_pool: EasyVQAPool | None = None

    def question_types(self) -> tuple[QuestionType, ...]:
        return self.QUESTION_TYPES

    def reserve_for_train(self, attributes: Attributes) -> None:
        evqa_split, image_id = attributes["easy_vqa_id"].split("/")
        if evqa_split == "train":
            self._train_ids.add(int(image_id))
            self._val_pool = None

    def pool(self, split: str) -> EasyVQAPool:
        full = load_easy_vqa_pool(_EASY_VQA_SPLIT[split])
        if split != "val":
            return full
        if self._val_pool is None:  # easy-VQA's train images that our train split leaves unused
            taken = self._train_ids
            questions = {
                key: {
                    text: kept for text, ids in texts.items() if (kept := [i for i in ids if i not in taken])
                }
                for key, texts in full.questions.items()
            }
            self._val_pool = EasyVQAPool(
                images={i: facts for i, facts in full.images.items() if i not in taken}, questions=questions
            )
        return self._val_pool

    def sample_attributes(self, rng: np.random.Generator, split: str, **constraints: Any) -> Attributes:
        pool = self.pool(split)
        matches = sorted(
            image_id
            for image_id, facts in pool.images.items()
            if all(facts.get(k) == v for k, v in constraints.items())
        )
        if not matches:
            raise ValueError(f"easy-VQA {split} has no image with {constraints}.")
        image_id = matches[int(rng.integers(len(matches)))]
        return self._attributes(split, image_id)

    def _attributes(self, split: str, image_id: int) -> Attributes:
        facts = self.pool(split).images[image_id]
        return {
            "shape": facts["shape"],
            "color": facts["color"],
            "easy_vqa_id": f"{_EASY_VQA_SPLIT[split]}/{image_id}",
        }

    def write(self, attributes: Attributes, folder: Path, stem: str, rng: np.random.Generator) -> str:
        # The same real image may serve several rows: copy it once, named by its easy-VQA id.
        evqa_split, image_id = attributes["easy_vqa_id"].split("/")
        name = f"easyvqa-{evqa_split}-{image_id}.png"
        target = folder / name
        if not target.exists():
            shutil.copyfile(self.pool(evqa_split).images[int(image_id)]["path"], target)
        return name

    def caption(self, attributes: Attributes) -> str:
        return f"a {attributes['color']} {attributes['shape']}"

    def caption_plan(self, rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
        # Every shape x colour combination equally often.
        combos = [{"shape": s, "color": c} for s in SHAPES_2D for c in EASY_VQA_COLORS]
        return balanced_choices(rng, combos, n)

    def draw_qa(self, rng: np.random.Generator, split: str, n: int) -> list[QAItem]:
        """Real easy-VQA questions, types and answers balanced.

        A question text is only used when the split has images for every answer of its type, and
        the text is drawn independently of the answer: the text then says nothing about the answer.
        """
        pool = self.pool(split)
        usable: dict[str, list[str]] = {}
        for qtype in self.QUESTION_TYPES:
            per_answer = [set(pool.questions.get((qtype.name, a), {})) for a in qtype.answers]
            usable[qtype.name] = sorted(set.intersection(*per_answer))
            if not usable[qtype.name]:
                raise ValueError(f"easy-VQA {split}: no {qtype.name} question has images for every answer.")
        order = balanced_choices(rng, list(self.QUESTION_TYPES), n)
        counts = {t.name: sum(1 for o in order if o.name == t.name) for t in self.QUESTION_TYPES}
        answers = {
            t.name: iter(balanced_choices(rng, t.answers, counts[t.name])) for t in self.QUESTION_TYPES
        }
        items = []
        for qtype in order:
            answer = next(answers[qtype.name])
            text = choose(rng, usable[qtype.name])
            image_ids = pool.questions[(qtype.name, answer)][text]
            image_id = image_ids[int(rng.integers(len(image_ids)))]
            items.append(QAItem(self._attributes(split, image_id), qtype.name, text, answer))
        return items
