"""The encoder-feature cache: keyed by file content and fingerprint, atomic, robust to corruption."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch

from hf_mera.data.feature_cache import FeatureCache


class CountingEncoder:
    """A stand-in encoder: features are a function of the file bytes; calls are recorded."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, paths: list[str]) -> torch.Tensor:
        self.calls.append(list(paths))
        rows = []
        for path in paths:
            data = open(path, "rb").read()
            rows.append(torch.tensor([len(data), sum(data) % 997, data[0]], dtype=torch.float32).repeat(2, 1))
        return torch.stack(rows)  # [n, 2, 3]


@pytest.fixture
def files(tmp_path):
    paths = []
    for i in range(5):
        path = tmp_path / "media" / f"f{i}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes([i + 1]) * (10 + i))
        paths.append(str(path))
    return paths


def test_hits_and_misses(tmp_path, files):
    cache, encoder = FeatureCache(tmp_path / "cache"), CountingEncoder()
    first = cache.get_or_compute(files, "enc-a", encoder, batch_size=2, progress=False)
    assert [len(c) for c in encoder.calls] == [2, 2, 1]
    assert cache.stats() == {"hits": 0, "misses": 5}
    second = cache.get_or_compute(files, "enc-a", encoder, batch_size=2, progress=False)
    assert len(encoder.calls) == 3 and cache.stats() == {"hits": 5, "misses": 5}
    for a, b in zip(first, second):
        assert torch.equal(a, b) and a.shape == (2, 3)
    assert torch.equal(first[0], encoder([files[0]])[0])


def test_keys_are_content_not_path(tmp_path, files):
    cache, encoder = FeatureCache(tmp_path / "cache"), CountingEncoder()
    cache.get_or_compute(files[:1], "enc-a", encoder, progress=False)
    copy = tmp_path / "elsewhere.bin"
    shutil.copy(files[0], copy)
    cache.get_or_compute([str(copy), files[0]], "enc-a", encoder, progress=False)
    assert len(encoder.calls) == 1  # a copy hits, duplicates are computed once
    assert cache.get(cache.content_key(copy), "enc-a") is not None


def test_changed_content_or_fingerprint_misses(tmp_path, files):
    cache, encoder = FeatureCache(tmp_path / "cache"), CountingEncoder()
    before = cache.get_or_compute(files[:2], "enc-a", encoder, progress=False)
    with open(files[0], "wb") as handle:
        handle.write(b"\x09" * 50)
    after = cache.get_or_compute(files[:2], "enc-a", encoder, progress=False)
    assert encoder.calls[-1] == [files[0]]
    assert not torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    cache.get_or_compute(files[:2], "enc-b", encoder, progress=False)
    assert encoder.calls[-1] == files[:2]


def test_corrupt_entry_is_recomputed_with_a_warning(tmp_path, files):
    cache, encoder = FeatureCache(tmp_path / "cache"), CountingEncoder()
    reference = cache.get_or_compute(files[:1], "enc-a", encoder, progress=False)
    entry = cache.entry_path(cache.content_key(files[0]), "enc-a")
    entry.write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match="Corrupt feature cache entry"):
        again = cache.get_or_compute(files[:1], "enc-a", encoder, progress=False)
    assert len(encoder.calls) == 2 and torch.equal(again[0], reference[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.get_or_compute(files[:1], "enc-a", encoder, progress=False)  # repaired: a clean hit
    assert len(encoder.calls) == 2


def test_put_get_invalidate_and_no_temp_files(tmp_path, files):
    cache = FeatureCache(tmp_path / "cache")
    key = cache.content_key(files[0])
    assert cache.get(key, "enc-a") is None
    view = torch.arange(12.0).reshape(3, 4)[1]  # a view into a larger tensor
    cache.put(key, "enc-a", view)
    assert torch.equal(cache.get(key, "enc-a"), view)
    cache.put(cache.content_key(files[1]), "enc-a", torch.ones(2))
    cache.put(key, "enc-b", torch.zeros(1))
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".")]  # no temp files
    assert cache.invalidate("enc-a") == 2 and cache.get(key, "enc-a") is None
    assert cache.get(key, "enc-b") is not None and cache.invalidate("enc-unknown") == 0


def test_bad_compute_fn_output_and_missing_file(tmp_path, files):
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(ValueError, match="one row per path"):
        cache.get_or_compute(files[:3], "enc-a", lambda paths: torch.zeros(1, 4), progress=False)
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        cache.get_or_compute([str(tmp_path / "nope.bin")], "enc-a", CountingEncoder(), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        cache.get_or_compute(files, "enc-a", CountingEncoder(), batch_size=0, progress=False)
