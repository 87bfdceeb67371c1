"""The sample format: validation errors name the row and field; datasets round-trip and concatenate."""

from __future__ import annotations

import copy

import pytest

from hf_mera.data.format import (
    SAMPLE_COLUMNS,
    count_placeholders,
    dataset_to_samples,
    empty_dataset,
    make_sample,
    placeholder,
    samples_to_dataset,
    strip_placeholders,
    validate_sample,
)

KNOWN = ("image", "video", "audio", "point_cloud")


def caption_row(**changes):
    row = make_sample("s1", "image", "caption", [("image", "/x/a.png")], "describe the image", "a red circle")
    row.update(changes)
    return row


def cross_row():
    return make_sample(
        "c1",
        "cross",
        "cross",
        [("image", "/x/a.png"), ("point_cloud", "/x/b.npy")],
        "do the image and the point cloud show the same color?",
        "yes",
        question="do the image and the point cloud show the same color?",
    )


def test_make_sample_layout():
    row = cross_row()
    assert set(row) == set(SAMPLE_COLUMNS)
    assert row["messages"][0]["content"] == (
        "<image>\n<point_cloud>\ndo the image and the point cloud show the same color?"
    )
    assert row["messages"][1] == {"role": "assistant", "content": "yes"}
    assert row["references"] == ["yes"]
    assert placeholder("point_cloud") == "<point_cloud>"
    validate_sample(row, KNOWN)


def test_placeholder_helpers():
    assert count_placeholders("<image>\n<image> <video> <b>", KNOWN) == {"image": 2, "video": 1}
    assert strip_placeholders("<image>\n  what is it?") == "what is it?"


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda r: r.update(task="summary"), "task", "unknown task"),
        (
            lambda r: r["media"].__setitem__(0, {"modality": "smell", "path": "/x"}),
            "media",
            "unknown modality",
        ),
        (lambda r: r["media"].append({"modality": "image", "path": "/x/b.png"}), "messages", "1 placeholder"),
        (lambda r: r.update(messages=r["messages"][:1]), "messages", "missing assistant turn"),
        (lambda r: r.update(references=[]), "references", "non-empty"),
        (lambda r: r.update(question="what?"), "question", "must be ''"),
        (lambda r: r.pop("question"), "question", "missing"),
        (
            lambda r: r["messages"][1].update(content="<image> a red circle"),
            "messages",
            "assistant turn holds",
        ),
        (lambda r: r.update(modality="video"), "media", "'image' media in a 'video' sample"),
    ],
)
def test_validate_sample_names_row_and_field(mutate, field, message):
    row = caption_row()
    mutate(row)
    with pytest.raises(ValueError) as error:
        validate_sample(row, KNOWN)
    text = str(error.value)
    assert "'s1'" in text and f"'{field}'" in text and message in text


def test_cross_sample_needs_matching_placeholders():
    row = cross_row()
    row["messages"][0]["content"] = "<image>\n<image>\nsame color?"
    with pytest.raises(ValueError, match="2 placeholder"):
        validate_sample(row, KNOWN)
    row = cross_row()
    row["modality"] = "image"
    with pytest.raises(ValueError, match="'cross' task belongs to modality 'cross'"):
        validate_sample(row, KNOWN)


def test_dataset_round_trip_and_concatenation():
    from datasets import concatenate_datasets

    rows = [caption_row(), cross_row()]
    dataset = samples_to_dataset(copy.deepcopy(rows))
    assert dataset.column_names == list(SAMPLE_COLUMNS)
    assert dataset_to_samples(dataset) == rows
    # Explicit features: a dataset from any source concatenates with an empty one.
    merged = concatenate_datasets([dataset, empty_dataset()])
    assert len(merged) == 2


def test_samples_to_dataset_rejects_bad_rows_and_duplicate_ids():
    with pytest.raises(ValueError, match="repeated"):
        samples_to_dataset([caption_row(), caption_row()])
    with pytest.raises(ValueError, match="unknown task"):
        samples_to_dataset([caption_row(task="nope")])
    # Extra keys are dropped rather than breaking concatenation across sources.
    assert samples_to_dataset([caption_row(extra=1)]).column_names == list(SAMPLE_COLUMNS)
