"""What to do with a bad data item (a missing or unreadable media file, a malformed annotation row).

Real datasets always have a few: YouTube clips that were taken down, truncated downloads. The
policy `on_bad_item` decides between dropping them with a counted warning (`"skip"`) and stopping
with the path and row (`"raise"`). Adapters use `BadItemLog` while parsing; `check_media` runs the
same policy over any sample-format dataset.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

# `reader(modality, path)` raises (any exception) when the file cannot be used.
MediaReader = Callable[[str, str], object]


class OnBadItem(str, Enum):
    """Policy for bad items: `"skip"` drops and counts them, `"raise"` raises ValueError."""

    SKIP = "skip"
    RAISE = "raise"

    @classmethod
    def parse(cls, value: OnBadItem | str) -> OnBadItem:
        """The policy named by `value`; ValueError lists the choices."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(p.value) for p in cls)
            raise ValueError(f"on_bad_item must be one of {choices}, got {value!r}.") from None


@dataclass(frozen=True)
class BadItem:
    """One bad item: where it is and why it was rejected."""

    row: int
    path: str
    reason: str
    id: str = ""

    def describe(self) -> str:
        ident = f" (id {self.id!r})" if self.id else ""
        return f"row {self.row}{ident}: {self.path}: {self.reason}"


class BadItemLog:
    """Applies a policy while a source is parsed: raises at once, or records and warns once at the end."""

    def __init__(self, policy: OnBadItem | str, source: str) -> None:
        self.policy = OnBadItem.parse(policy)
        self.source = source
        self.items: list[BadItem] = []

    def report(self, row: int, path: str, reason: str, id: str = "") -> None:
        """Records a bad item, or raises ValueError naming its path and row under `"raise"`."""
        item = BadItem(row=row, path=str(path), reason=reason, id=id)
        if self.policy is OnBadItem.RAISE:
            raise ValueError(f"{self.source}: bad item at {item.describe()}")
        self.items.append(item)

    def finish(self) -> list[BadItem]:
        """Logs one warning with the count (and the first few items) of what was skipped."""
        if self.items:
            shown = "; ".join(item.describe() for item in self.items[:3])
            more = f" (and {len(self.items) - 3} more)" if len(self.items) > 3 else ""
            logger.warning("%s: skipped %d bad item(s): %s%s", self.source, len(self.items), shown, more)
        return self.items


def default_media_reader(modality: str, path: str) -> None:
    """Reads `path` with its modality's registered loader (`ModalitySpec.load`); an unknown modality
    is a `ValueError` naming the known ones."""
    from hf_mera.modalities import get_modality  # noqa: PLC0415 - heavier import, only for deep checks

    get_modality(modality).load(path)


def media_problem(
    modality: str, path: str, deep: bool = True, reader: MediaReader | None = None
) -> str | None:
    """Why the file cannot be used (`None` when it can): missing, empty, or (when `deep`) unreadable."""
    if not os.path.isfile(path):
        return "file not found"
    if os.path.getsize(path) == 0:
        return "empty file"
    if deep:
        try:
            (reader or default_media_reader)(modality, path)
        except Exception as error:  # any failure to decode makes the file bad; report it, do not crash
            return f"unreadable ({type(error).__name__}: {error})"
    return None


def find_bad_media(dataset: Dataset, deep: bool = True, reader: MediaReader | None = None) -> list[BadItem]:
    """Every media item of a sample-format dataset that is missing or (when `deep`) unreadable.

    A file shared by many rows (e.g. the ~40 captions of one MSVD clip) is read once.
    """
    verdicts: dict[tuple[str, str], str | None] = {}
    bad: list[BadItem] = []
    for index, (row_id, media) in enumerate(zip(dataset["id"], dataset["media"])):
        for item in media:
            key = (item["modality"], item["path"])
            if key not in verdicts:
                verdicts[key] = media_problem(item["modality"], item["path"], deep=deep, reader=reader)
            if verdicts[key] is not None:
                bad.append(BadItem(row=index, path=item["path"], reason=verdicts[key], id=row_id))
    return bad


def check_media(
    dataset: Dataset,
    policy: OnBadItem | str = "skip",
    deep: bool = True,
    reader: MediaReader | None = None,
) -> Dataset:
    """Applies the bad-item policy to the media of a sample-format dataset.

    Args:
        dataset: rows of the sample format.
        policy: `"skip"` drops rows with a bad media file and logs a warning with the count;
            `"raise"` raises ValueError naming the first bad path and row.
        deep: also open and decode each file (not only check that it exists and is non-empty).
        reader: `reader(modality, path)` that raises on a bad file; defaults to the modality's
            registered loader.

    Returns:
        The dataset without the bad rows (the same object when none is bad).
    """
    log = BadItemLog(policy, source="check_media")
    bad = find_bad_media(dataset, deep=deep, reader=reader)
    for item in bad:
        log.report(item.row, item.path, item.reason, item.id)
    log.finish()
    if not bad:
        return dataset
    drop = {item.row for item in bad}
    return dataset.select([i for i in range(len(dataset)) if i not in drop])
