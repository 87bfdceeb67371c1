"""The bad-item policy over media files: missing or corrupt files are skipped with a count, or raised."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from hf_mera.data.bad_data import OnBadItem, check_media, find_bad_media
from hf_mera.data.format import make_sample, samples_to_dataset


@pytest.fixture
def dataset(tmp_path):
    good_png = tmp_path / "good.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(good_png)
    corrupt_png = tmp_path / "corrupt.png"
    corrupt_png.write_bytes(good_png.read_bytes()[:20])
    good_npy = tmp_path / "good.npy"
    np.save(good_npy, np.zeros((16, 6), dtype=np.float32))
    bad_npy = tmp_path / "bad.npy"
    np.save(bad_npy, np.zeros(5, dtype=np.float32))
    media = [
        ("image", good_png),
        ("image", corrupt_png),
        ("image", tmp_path / "missing.png"),
        ("point_cloud", good_npy),
        ("point_cloud", bad_npy),
        ("image", good_png),
    ]
    rows = [
        make_sample(f"r{i}", modality, "caption", [(modality, str(path))], "describe", "a thing")
        for i, (modality, path) in enumerate(media)
    ]
    return samples_to_dataset(rows)


def test_skip_drops_and_counts_bad_rows(dataset, caplog):
    with caplog.at_level(logging.WARNING):
        kept = check_media(dataset, "skip")
    assert kept["id"] == ["r0", "r3", "r5"]
    assert "skipped 3 bad item(s)" in caplog.text and "missing.png" in caplog.text


def test_raise_names_path_and_row(dataset):
    with pytest.raises(ValueError, match=r"row 1 \(id 'r1'\): .*corrupt\.png"):
        check_media(dataset, OnBadItem.RAISE)


def test_shallow_check_only_sees_missing_files(dataset):
    bad = find_bad_media(dataset, deep=False)
    assert [(b.row, b.reason) for b in bad] == [(2, "file not found")]


def test_custom_reader_and_policy_parsing(dataset):
    seen = []

    def reader(modality, path):
        seen.append(path)
        if path.endswith(".npy"):
            raise ValueError("no point clouds today")

    kept = check_media(dataset, "skip", reader=reader)
    assert kept["id"] == ["r0", "r1", "r5"]
    assert len(seen) == 4  # the shared good.png is read once; the missing file is never read
    with pytest.raises(ValueError, match="'skip', 'raise'"):
        OnBadItem.parse("ignore")
    assert check_media(dataset.select([0, 5]), "raise") is not None
