"""The embedded benchmark's validation split (#17): disjoint from train and test, and adding it leaves
every train and test set of a benchmark byte for byte as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hf_mera.data.embedded import EmbeddedSizes, build_embedded_benchmark

# Many image rows: easy-VQA's train pool has ~4,000 images, so a val split drawn from it without
# leaving out train's images would share about 10 of them with train at these sizes.
IMAGE_SIZES = EmbeddedSizes(
    caption_train=200, caption_val=100, caption_test=4, qa_train=200, qa_val=100, qa_test=4, cross_test=0
)
SMALL = EmbeddedSizes(
    caption_train=6, caption_val=4, caption_test=4, qa_train=10, qa_val=6, qa_test=6, cross_test=4
)
NO_VAL = EmbeddedSizes(**{**SMALL.__dict__, "caption_val": 0, "qa_val": 0})


def _media_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _items(bench, modality: str, split: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The media (by content) and the (question, media) pairs of one modality's split."""
    media, pairs = set(), set()
    for task in ("caption", "qa"):
        for row in bench.dataset(modality, task, split):
            digest = "|".join(_media_hash(m["path"]) for m in row["media"])
            media.add(digest)
            pairs.add((row["messages"][0]["content"], digest))
    return media, pairs


def _assert_disjoint(bench, modality: str) -> None:
    val_media, val_pairs = _items(bench, modality, "val")
    assert val_media, f"{modality}: empty val split"
    for other in ("train", "test"):
        media, pairs = _items(bench, modality, other)
        assert not val_media & media, f"{modality}: val shares media with {other}"
        assert not val_pairs & pairs, f"{modality}: val shares (question, media) pairs with {other}"


def test_image_val_uses_no_train_image(tmp_path):
    bench = build_embedded_benchmark(tmp_path / "b", sizes=IMAGE_SIZES, modalities=("image",), progress=False)
    _assert_disjoint(bench, "image")
    ids = {
        split: {
            m["attributes"]["easy_vqa_id"]
            for t in ("caption", "qa")
            for m in bench.metadata("image", t, split)
        }
        for split in ("train", "val", "test")
    }
    assert not ids["val"] & ids["train"] and not ids["val"] & ids["test"]
    assert all(i.startswith("train/") for i in ids["val"])  # val: easy-VQA's train images, left over


@pytest.mark.slow
def test_val_is_disjoint_and_train_test_are_unchanged(tmp_path):
    with_val = build_embedded_benchmark(tmp_path / "val", sizes=SMALL, progress=False)
    without = build_embedded_benchmark(tmp_path / "noval", sizes=NO_VAL, progress=False)
    for modality in with_val.modalities:
        _assert_disjoint(with_val, modality)
        assert len(with_val.dataset(modality, "qa", "val")) == SMALL.qa_val
    # Every train / test / cross annotation file and media file is byte-identical with and without val.
    files = sorted(
        p.relative_to(without.root)
        for p in without.root.rglob("*")
        if p.is_file() and p.name != "manifest.json" and "-val" not in p.name and "/val/" not in p.as_posix()
    )
    assert any("train" in str(f) for f in files) and any("test" in str(f) for f in files)
    for name in files:
        assert (with_val.root / name).read_bytes() == (without.root / name).read_bytes(), name
    assert with_val.content_hash != without.content_hash  # val adds files: the hash names it
