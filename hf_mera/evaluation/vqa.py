"""VQA accuracy (Antol et al., 2015; Goyal et al., 2017): the metric OK-VQA and VQA v2 are published with.

A question has ten human answers. A prediction that matches `m` of them earns, for each annotator
`i`, min(#matches among the other nine / 3, 1); the item's accuracy is the mean over the ten
leave-one-out subsets (the "10 choose 9" average), so it is 0, 0.3, 0.6, 0.9 or 1 for m = 0, 1, 2,
3, >= 4. Answers are compared after the VQA evaluation's normalisation (`normalize_vqa_answer`).

Two choices differ from the official evaluation script (`vqaEval.py`), both on purpose:
- the official script normalises only when the ten answers are not all identical, so a verbose
  prediction ("The dog.") scores 0 against ten "dog"s; here answers and prediction are always
  normalised, so it scores 1;
- the contraction table is a short one of common English contractions, not the script's full list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# The VQA script's characters: removed where they touch a space (or anywhere when the answer holds a
# digit,digit thousands separator), replaced by a space otherwise. The apostrophe is not among them.
_VQA_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`")
_VQA_PUNCTUATION += (",", "?", "!")
_THOUSANDS = re.compile(r"\d,\d")
# A period that is not followed by a digit ends a sentence or an abbreviation ("3.5" keeps its point).
_PERIOD = re.compile(r"\.(?!\d)")
# Number words the VQA script maps to digits (only up to ten, and "none" to 0 for counting questions).
_VQA_NUMBERS = {
    word: str(value)
    for value, word in enumerate("zero one two three four five six seven eight nine ten".split())
}
_VQA_NUMBERS["none"] = "0"
_ARTICLES = frozenset({"a", "an", "the"})
# Common contractions written without their apostrophe, as annotators often do ("dont" -> "don't").
_CONTRACTIONS = {
    word.replace("'", ""): word
    for word in (
        "ain't aren't can't couldn't didn't doesn't don't hadn't hasn't haven't isn't it's let's "
        "mightn't mustn't needn't shouldn't wasn't weren't won't wouldn't i'm i've i'd i'll you're "
        "you've you'd you'll he's she's that's there's they're they've we're we've what's where's "
        "who's o'clock y'all"
    ).split()
    if word not in ("it's", "let's", "we're", "he's")  # "its", "lets", "were", "hes" are words themselves
}


def normalize_vqa_answer(text: str) -> str:
    """An answer as the VQA evaluation compares it.

    Steps, in order: newlines and tabs become spaces, ends stripped; punctuation (`_VQA_PUNCTUATION`)
    removed or replaced by a space; periods not followed by a digit removed; lower-cased; number
    words up to "ten" (and "none") turned into digits; articles dropped; apostrophe-less
    contractions given their apostrophe; words joined by single spaces.
    """
    if not isinstance(text, str):
        raise ValueError(f"normalize_vqa_answer expects a str, got {type(text).__name__}.")
    text = text.replace("\n", " ").replace("\t", " ").strip()
    out = text
    for mark in _VQA_PUNCTUATION:
        # As the VQA script does: decided on the original text, applied to the running one.
        if f"{mark} " in text or f" {mark}" in text or _THOUSANDS.search(text):
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    out = _PERIOD.sub("", out)
    words = [_VQA_NUMBERS.get(word, word) for word in out.lower().split()]
    words = [_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES]
    return " ".join(words)


def vqa_item_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy of one prediction against its annotators' `answers` (ten in VQA / OK-VQA).

    The mean, over each annotator left out in turn, of min(#other annotators who gave the
    prediction / 3, 1). With `m` of `n` answers matching this is
    (m·min((m-1)/3, 1) + (n-m)·min(m/3, 1)) / n.

    Raises:
        `ValueError`: fewer than two answers (nothing is left when one is held out), or a non-str.
    """
    if isinstance(answers, str) or len(answers) < 2:
        raise ValueError(
            f"VQA accuracy needs the annotators' answers (ten in VQA / OK-VQA), got {answers!r}; "
            "score single-answer sets with metric 'accuracy'."
        )
    predicted = normalize_vqa_answer(prediction)
    matches = [normalize_vqa_answer(answer) == predicted for answer in answers]
    total = sum(matches)
    # Leaving annotator i out: the others who match are `total` minus i's own match.
    per_subset = [min((total - matched) / 3, 1.0) for matched in matches]
    return sum(per_subset) / len(per_subset)


@dataclass
class VQAAccuracyResult:
    """VQA accuracy over a test set.

    Args:
        accuracy (`float`): mean item accuracy, in [0, 1] (multiply by 100 for the usual percentage).
        per_item (`list[float]`): each item's accuracy (0, 0.3, 0.6, 0.9 or 1 with ten answers).
    """

    accuracy: float
    per_item: list[float]


def vqa_accuracy(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> VQAAccuracyResult:
    """VQA accuracy of `predictions`, item `k` scored against the annotator answers `answers[k]`.

    Raises:
        `ValueError`: the lists differ in length or are empty, or an item has fewer than two answers
            (the message names the item).
    """
    if len(predictions) != len(answers):
        raise ValueError(f"predictions and answers differ in length: {len(predictions)}, {len(answers)}.")
    if not predictions:
        raise ValueError("predictions is empty: VQA accuracy needs at least one item.")
    per_item = []
    for index, (prediction, item_answers) in enumerate(zip(predictions, answers)):
        try:
            per_item.append(vqa_item_accuracy(prediction, item_answers))
        except ValueError as error:
            raise ValueError(f"item {index}: {error}") from None
    return VQAAccuracyResult(accuracy=sum(per_item) / len(per_item), per_item=per_item)


__all__ = ["VQAAccuracyResult", "normalize_vqa_answer", "vqa_accuracy", "vqa_item_accuracy"]
