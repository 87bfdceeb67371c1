"""Short-answer normalisation and exact matching (the offline QA judge's rule).

Exact match after normalisation is deliberately strict: a verbose but correct answer ("it is a red
square") does not match "red". `contains=True` also accepts a reference that occurs as whole words
inside the prediction; that favours predictions listing many candidates, so report which mode
produced a number. The paper itself judges with GPT-4o mini (`OpenAIJudge`).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence

_ARTICLES = frozenset({"a", "an", "the"})
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70"})
_NUMBER_WORDS.update({"eighty": "80", "ninety": "90", "hundred": "100", "none": "0"})
# A period or comma between digits is part of a number (3.5, 1,000) and must survive punctuation removal.
_NUMBER_SEPARATOR = re.compile(r"(?<=\d)[.,](?=\d)")
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation + '‘’“”«»…–—')}]")


def normalize_answer(text: str) -> str:
    """Normalise a short answer for exact matching.

    Steps, in order: Unicode NFKC and lower-casing; apostrophes dropped (so "don't" → "dont",
    "dog's" → "dogs"); thousands separators dropped ("1,000" → "1000") while decimal points between
    digits are kept ("3.5"); every other punctuation character becomes a space ("black-and-white" →
    "black and white"); articles "a", "an", "the" removed unless nothing else is left (so the
    multiple-choice answer "A" stays "a"); number words zero–twenty, the tens and
    "hundred" replaced by digits ("two" → "2"; also "none" → "0", as the VQA evaluation does for
    counting answers); whitespace collapsed.
    """
    if not isinstance(text, str):
        raise ValueError(f"normalize_answer expects a str, got {type(text).__name__}.")
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"['‘’`]", "", text)
    text = _NUMBER_SEPARATOR.sub(lambda m: "\0" if m.group(0) == "." else "", text)
    text = _PUNCTUATION.sub(" ", text).replace("\0", ".")
    words = text.split()
    # An answer made only of an article ("A" as a multiple-choice option) keeps it rather than vanishing.
    words = [word for word in words if word not in _ARTICLES] or words
    return " ".join(_NUMBER_WORDS.get(word, word) for word in words)


def exact_match(prediction: str, references: Sequence[str], *, contains: bool = False) -> bool:
    """Whether `prediction` matches any of `references` after `normalize_answer`.

    Args:
        prediction (`str`): the model's answer.
        references (`list[str]`): the accepted answers (any one suffices).
        contains (`bool`, defaults to `False`): also accept a normalised reference that appears as a
            whole-word sequence inside the normalised prediction ("a red square" contains "red").

    A reference that normalises to nothing (blank or pure punctuation) matches no prediction.

    Raises:
        `ValueError`: `references` is empty or a single str.
    """
    if isinstance(references, str) or not references:
        raise ValueError(f"references must be a non-empty list of str, got {references!r}.")
    predicted = normalize_answer(prediction)
    for reference in references:
        expected = normalize_answer(reference)
        if not expected:  # a blank reference accepts nothing, not even a blank prediction
            continue
        if predicted == expected:
            return True
        if contains and expected and f" {expected} " in f" {predicted} ":
            return True
    return False


__all__ = ["exact_match", "normalize_answer"]
