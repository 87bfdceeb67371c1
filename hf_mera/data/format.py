"""The one sample format every dataset of hf_mera is turned into (docs/CONTRACTS.md, "Samples").

A sample is one conversation about zero or more media files::

    {
        "id": "coco/train/391895",
        "modality": "image",                  # the modality the task belongs to, "cross" for mixed
        "task": "caption",                    # "caption" | "qa" | "cross"
        "media": [{"modality": "image", "path": "/data/coco/train2014/....jpg"}],
        "messages": [
            {"role": "user", "content": "<image>\\nDescribe the image briefly."},
            {"role": "assistant", "content": "A man riding a bike."},
        ],
        "references": ["A man riding a bike.", ...],   # all reference captions / accepted answers
        "question": "",                                # the bare question, "" for captions
    }

User turns hold one placeholder `<m>` per media item of modality `m`, in the order of `media`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict

if TYPE_CHECKING:
    from datasets import Dataset, Features

TASKS = ("caption", "qa", "cross")
CROSS_MODALITY = "cross"
ROLES = ("user", "assistant")
SAMPLE_COLUMNS = ("id", "modality", "task", "media", "messages", "references", "question")

# A placeholder is `<name>` with a modality-like name; other `<...>` text is left alone.
_PLACEHOLDER_RE = re.compile(r"<([a-z][a-z0-9_]*)>")


class MediaItem(TypedDict):
    """One media file of a sample."""

    modality: str
    path: str


class Message(TypedDict):
    """One turn of a conversation."""

    role: str
    content: str


class Sample(TypedDict):
    """One row of the sample format (see the module docstring)."""

    id: str
    modality: str
    task: str
    media: list[MediaItem]
    messages: list[Message]
    references: list[str]
    question: str


def placeholder(modality: str) -> str:
    """The placeholder text of `modality` in user turns, e.g. `"<point_cloud>"`."""
    return f"<{modality}>"


def known_modalities() -> tuple[str, ...]:
    """The modalities registered in `hf_mera.modalities` (the four built-in ones and any added), sorted."""
    from hf_mera.modalities import MODALITY_REGISTRY  # noqa: PLC0415 - heavier import, only when validating

    return tuple(sorted(MODALITY_REGISTRY))


def sample_features() -> Features:
    """`datasets.Features` of the sample format, so that datasets from different sources concatenate."""
    from datasets import Features, List, Value

    return Features(
        {
            "id": Value("string"),
            "modality": Value("string"),
            "task": Value("string"),
            "media": List({"modality": Value("string"), "path": Value("string")}),
            "messages": List({"role": Value("string"), "content": Value("string")}),
            "references": List(Value("string")),
            "question": Value("string"),
        }
    )


def make_sample(
    id: str,
    modality: str,
    task: str,
    media: Sequence[tuple[str, str] | Mapping[str, str]],
    prompt: str,
    answer: str,
    references: Sequence[str] | None = None,
    question: str = "",
) -> Sample:
    """Builds a one-turn sample: the user turn is one placeholder line per media item, then `prompt`.

    Args:
        id: unique id of the row.
        modality: the modality the task belongs to (`"cross"` for mixed inputs).
        task: `"caption"`, `"qa"` or `"cross"`.
        media: `(modality, path)` pairs or `{"modality", "path"}` dicts, in placeholder order.
        prompt: the instruction or question shown after the placeholders.
        answer: the assistant turn (the training target).
        references: all accepted answers / reference captions; defaults to `[answer]`.
        question: the bare question (`""` for captions).
    """
    items: list[MediaItem] = []
    for item in media:
        if isinstance(item, Mapping):
            items.append({"modality": str(item["modality"]), "path": str(item["path"])})
        else:
            items.append({"modality": str(item[0]), "path": str(item[1])})
    user = "\n".join([placeholder(m["modality"]) for m in items] + [prompt])
    return {
        "id": id,
        "modality": modality,
        "task": task,
        "media": items,
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
        "references": list(references) if references is not None else [answer],
        "question": question,
    }


def count_placeholders(text: str, modalities: Iterable[str]) -> Counter:
    """Counts the placeholders `<m>` of the given modalities in `text`."""
    wanted = set(modalities)
    return Counter(name for name in _PLACEHOLDER_RE.findall(text) if name in wanted)


def strip_placeholders(text: str) -> str:
    """`text` without its placeholders (any `<name>` token), whitespace tidied."""
    return " ".join(_PLACEHOLDER_RE.sub(" ", text).split())


def validate_sample(row: Mapping[str, Any], known: Iterable[str] | None = None) -> None:
    """Checks one row against the sample format; raises ValueError naming the row id and the field.

    Args:
        row: the row (a dict, e.g. `dataset[i]`).
        known: the accepted media modalities; defaults to `known_modalities()`.
    """
    rid = row.get("id", "<no id>") if isinstance(row, Mapping) else "<not a mapping>"
    if not isinstance(row, Mapping):
        raise ValueError(f"Sample {rid}: a row must be a mapping, got {type(row).__name__}.")

    def fail(field_name: str, why: str) -> NoReturn:
        raise ValueError(f"Sample {rid!r}, field {field_name!r}: {why}")

    missing = [c for c in SAMPLE_COLUMNS if c not in row]
    if missing:
        fail(missing[0], f"missing (a sample needs the columns {', '.join(SAMPLE_COLUMNS)}).")
    if not isinstance(row["id"], str) or not row["id"]:
        fail("id", "must be a non-empty string.")
    known_set = set(known) if known is not None else set(known_modalities())

    task = row["task"]
    if task not in TASKS:
        fail("task", f"unknown task {task!r}; expected one of {', '.join(TASKS)}.")
    modality = row["modality"]
    if task == "cross" and modality != CROSS_MODALITY:
        fail("modality", f"a 'cross' task belongs to modality {CROSS_MODALITY!r}, got {modality!r}.")
    if task != "cross" and modality not in known_set:
        fail("modality", f"unknown modality {modality!r}; known: {', '.join(sorted(known_set))}.")

    media = row["media"]
    if not isinstance(media, Sequence) or isinstance(media, str):
        fail("media", "must be a list of {'modality', 'path'} dicts.")
    for k, item in enumerate(media):
        if not isinstance(item, Mapping) or not isinstance(item.get("path"), str) or not item.get("path"):
            fail("media", f"item {k} must be a dict with a non-empty string 'path'.")
        if item.get("modality") not in known_set:
            fail(
                "media",
                f"item {k} has unknown modality {item.get('modality')!r}; known: {', '.join(sorted(known_set))}.",
            )
        if task != "cross" and item["modality"] != modality:
            fail("media", f"item {k} is {item['modality']!r} media in a {modality!r} sample.")

    messages = row["messages"]
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        fail("messages", "must be a non-empty list of {'role', 'content'} dicts.")
    for k, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ROLES:
            fail("messages", f"turn {k} needs a role in {ROLES}.")
        if not isinstance(message.get("content"), str):
            fail("messages", f"turn {k} needs string content.")
    if not any(m["role"] == "assistant" for m in messages):
        fail("messages", "missing assistant turn.")
    if messages[0]["role"] != "user":
        fail("messages", "the first turn must be the user's.")

    # Placeholders: one per media item of each modality, only in user turns.
    names = known_set | {str(item["modality"]) for item in media}
    in_user = Counter()
    for message in messages:
        counts = count_placeholders(message["content"], names)
        if message["role"] == "assistant" and counts:
            fail("messages", f"an assistant turn holds placeholders {dict(counts)}.")
        in_user.update(counts)
    in_media = Counter(str(item["modality"]) for item in media)
    for name in sorted(set(in_user) | set(in_media)):
        if in_user[name] != in_media[name]:
            fail(
                "messages",
                f"{in_user[name]} placeholder(s) {placeholder(name)} in the user turns but "
                f"{in_media[name]} {name} media item(s).",
            )

    references = row["references"]
    if (
        not isinstance(references, Sequence)
        or isinstance(references, str)
        or not references
        or not all(isinstance(r, str) for r in references)
    ):
        fail("references", "must be a non-empty list of strings.")
    question = row["question"]
    if not isinstance(question, str):
        fail("question", "must be a string.")
    if task == "caption" and question:
        fail("question", "must be '' for a caption sample.")
    if task != "caption" and not question:
        fail("question", f"a {task!r} sample needs its question.")


def samples_to_dataset(samples: Iterable[Mapping[str, Any]], validate: bool = True) -> Dataset:
    """A `datasets.Dataset` with the sample features from rows of the sample format.

    Raises ValueError on an invalid row (when `validate`) or a repeated id.
    """
    from datasets import Dataset

    rows = [dict(s) for s in samples]
    known = known_modalities() if validate else None
    seen: set[str] = set()
    for row in rows:
        if validate:
            validate_sample(row, known)
        if row.get("id") in seen:
            raise ValueError(f"Sample {row.get('id')!r}, field 'id': repeated; ids must be unique.")
        seen.add(row.get("id"))
    if not rows:
        return empty_dataset()
    # Extra keys would break concatenation across sources: keep exactly the contract's columns.
    return Dataset.from_list(
        [{c: row[c] for c in SAMPLE_COLUMNS} for row in rows], features=sample_features()
    )


def dataset_to_samples(dataset: Dataset) -> list[Sample]:
    """The rows of a sample-format dataset as plain dicts."""
    missing = [c for c in SAMPLE_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(f"Dataset lacks the sample column(s) {', '.join(missing)}.")
    return [{c: row[c] for c in SAMPLE_COLUMNS} for row in dataset]  # type: ignore[misc]


def empty_dataset() -> Dataset:
    """An empty dataset with the sample features."""
    from datasets import Dataset

    # from_list([]) infers no columns; from_dict with empty columns keeps the features.
    return Dataset.from_dict({c: [] for c in SAMPLE_COLUMNS}, features=sample_features())
