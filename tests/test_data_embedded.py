"""The embedded benchmark: built once, atomically, deterministically; balanced so that text alone is
chance while simple readings of the media files answer the questions."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hf_mera.data.embedded import (
    EmbeddedBenchmark,
    EmbeddedSizes,
    build_embedded_benchmark,
    default_benchmark_dir,
    text_only_baseline,
)
from hf_mera.data.embedded import builder as builder_module
from hf_mera.data.embedded.base import COLORS
from hf_mera.data.embedded.cache import publish
from hf_mera.data.embedded.checks import score_text_only
from hf_mera.data.format import validate_sample

MODALITIES = ("image", "video", "audio", "point_cloud")
# Enough QA rows that a chance-level guesser stays within a few standard errors of chance.
SIZES = EmbeddedSizes(
    caption_train=16, caption_val=4, caption_test=8, qa_train=150, qa_val=6, qa_test=150, cross_test=160
)
TINY = EmbeddedSizes(
    caption_train=3, caption_val=1, caption_test=2, qa_train=3, qa_val=1, qa_test=2, cross_test=8
)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> EmbeddedBenchmark:
    return build_embedded_benchmark(
        tmp_path_factory.mktemp("embedded") / "b", seed=0, sizes=SIZES, progress=False
    )


def rows(bench, modality, task, split):
    dataset = bench.dataset(modality, task, split)
    return list(zip(dataset, bench.metadata(modality, task, split)))


# ---- structure -------------------------------------------------------------------------------
def test_sets_have_the_requested_sizes_and_valid_rows(bench):
    for modality in MODALITIES:
        for task in ("caption", "qa"):
            for split in ("train", "val", "test"):
                dataset = bench.dataset(modality, task, split)
                assert len(dataset) == SIZES.count(task, split)
                for row in dataset:
                    validate_sample(row)
                    assert row["task"] == task and row["modality"] == modality
                    assert all(
                        Path(m["path"]).is_file() and Path(m["path"]).is_absolute() for m in row["media"]
                    )
    cross = bench.cross_modal_test()
    assert len(cross) == SIZES.cross_test
    assert {len(r["media"]) for r in cross} == {2, 3, 4}
    assert {r["task"] for r in cross} == {"cross"}
    assert len(bench.train_dataset("audio")) == SIZES.caption_train + SIZES.qa_train
    with pytest.raises(ValueError, match="split"):
        bench.dataset("image", "qa", "validation")


def test_media_formats_on_disk(bench):
    suffixes = {
        m: Counter(Path(r["media"][0]["path"]).suffix for r in bench.dataset(m, "qa", "train"))
        for m in MODALITIES
    }
    assert set(suffixes["image"]) == {".png"}
    assert set(suffixes["video"]) == {".mp4"}
    assert set(suffixes["audio"]) == {".wav"}
    assert set(suffixes["point_cloud"]) == {".npy", ".ply"}  # some clouds as .ply, most as .npy
    import soundfile

    info = soundfile.info(bench.dataset("audio", "caption", "train")[0]["media"][0]["path"])
    assert info.samplerate == 16000 and info.channels == 1


def test_modality_loaders_read_every_kind_of_file(bench):
    modalities = pytest.importorskip("hf_mera.modalities")
    paths = {}
    for row in list(bench.cross_modal_test()) + list(bench.dataset("point_cloud", "qa", "train")):
        for item in row["media"]:
            paths.setdefault((item["modality"], Path(item["path"]).suffix), item["path"])
    assert {k[0] for k in paths} == set(MODALITIES)
    for (modality, _), path in sorted(paths.items()):
        assert modalities.get_modality(modality).load(path) is not None


def test_all_texts_is_a_small_closed_vocabulary(bench):
    texts = bench.all_texts()
    assert "describe the image" in texts and "a red circle" in texts or "a red triangle" in texts
    assert not any("<" in t for t in texts)
    words = {w for t in texts for w in re.findall(r"[a-z]+", t)}
    assert len(words) < 100
    for row in bench.dataset("video", "qa", "train"):  # answers: lower case, no punctuation
        assert re.fullmatch(r"[a-z]+( [a-z]+)*", row["messages"][-1]["content"])


# ---- balance: text alone is chance -----------------------------------------------------------
def three_standard_errors(chance: float, n: int) -> float:
    """The stated margin: 3 binomial standard errors of a chance-level guesser on n questions."""
    return 3 * math.sqrt(chance * (1 - chance) / n)


@pytest.mark.parametrize("modality", MODALITIES)
def test_text_only_predictor_is_near_chance(bench, modality):
    scores = text_only_baseline(bench, modality)
    assert set(scores) == set(bench.question_types(modality))
    for score in scores.values():
        assert abs(score.accuracy - score.chance) <= three_standard_errors(score.chance, score.n), score
    # Answers do vary with the input: every answer of every question type occurs in training.
    answers = Counter(
        (m["question_type"], r["messages"][-1]["content"]) for r, m in rows(bench, modality, "qa", "train")
    )
    for qtype, options in bench.question_types(modality).items():
        assert all(answers[(qtype, a)] > 0 for a in options), (qtype, options)


def test_cross_modal_text_only_predictor_is_near_chance(bench, tmp_path):
    # The cross-modal set is test-only: fit the text-only predictor on an independent draw (another seed).
    other = build_embedded_benchmark(
        tmp_path / "other",
        seed=1,
        sizes=dataclasses.replace(TINY, cross_test=160),
        progress=False,
    )

    def columns(b):
        dataset = b.cross_modal_test()
        types = [m["question_type"] for m in b.metadata("cross", "cross", "test")]
        return list(dataset["question"]), types, [r[-1]["content"] for r in dataset["messages"]]

    scores = score_text_only(columns(other), columns(bench), bench.question_types("cross"))
    assert set(scores) == {"same_color", "which_shape", "odd_color", "all_four"}
    for score in scores.values():
        assert abs(score.accuracy - score.chance) <= three_standard_errors(score.chance, score.n), score
    counts = Counter(
        (m["question_type"], r["messages"][-1]["content"])
        for r, m in zip(bench.cross_modal_test(), bench.metadata("cross", "cross", "test"))
    )
    for family, options in bench.question_types("cross").items():
        assert max(counts[(family, a)] for a in options) - min(counts[(family, a)] for a in options) <= 1


# ---- the media hold the answers --------------------------------------------------------------
def foreground(frame: np.ndarray) -> np.ndarray:
    """Pixels that differ clearly from the frame's most common colour (the background)."""
    flat = frame.reshape(-1, 3)
    values, counts = np.unique(flat, axis=0, return_counts=True)
    background = values[counts.argmax()].astype(int)
    return np.abs(frame.astype(int) - background).sum(-1) > 80


def test_image_colour_is_readable_from_pixels(bench):
    from PIL import Image

    def mean_colour(path):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        return pixels[foreground(pixels)].mean(0)

    train = [
        (mean_colour(r["media"][0]["path"]), m["attributes"]["color"])
        for r, m in rows(bench, "image", "qa", "train")
    ]
    centroids = {c: np.mean([x for x, y in train if y == c], axis=0) for c in {y for _, y in train}}
    test = [(r, m) for r, m in rows(bench, "image", "qa", "test") if m["question_type"] == "color"]
    right = 0
    for row, _ in test:
        x = mean_colour(row["media"][0]["path"])
        right += (
            min(centroids, key=lambda c: np.linalg.norm(centroids[c] - x)) == row["messages"][-1]["content"]
        )
    assert right / len(test) >= 0.9


def test_video_motion_is_readable_from_frames(bench):
    import av

    def motion(path):
        with av.open(path) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        first, last = (np.argwhere(foreground(f)).mean(0) for f in (frames[0], frames[-1]))
        dy, dx = last - first
        if max(abs(dx), abs(dy)) < 5:
            return None
        if abs(dx) > abs(dy):
            return "right" if dx > 0 else "left"
        return "down" if dy > 0 else "up"

    checked = 0
    for row, meta in rows(bench, "video", "qa", "test"):
        answer = row["messages"][-1]["content"]
        if meta["question_type"] == "direction":
            assert motion(row["media"][0]["path"]) == answer
        elif meta["question_type"] == "moves":
            assert (motion(row["media"][0]["path"]) is not None) == (answer == "yes")
        else:
            continue
        checked += 1
    assert checked >= 40


def test_beep_count_is_readable_from_the_waveform(bench):
    import soundfile

    words = ("one", "two", "three", "four")
    checked = 0
    for row, meta in rows(bench, "audio", "qa", "test"):
        if meta["question_type"] != "count":
            continue
        wave, rate = soundfile.read(row["media"][0]["path"])
        window = rate // 200  # 5 ms
        loud = np.abs(wave)[: len(wave) // window * window].reshape(-1, window).max(1) > 0.1
        onsets = int(np.sum(loud[1:] & ~loud[:-1]) + loud[0])
        assert words[onsets - 1] == row["messages"][-1]["content"]
        checked += 1
    assert checked >= 20


def test_point_cloud_colour_and_aspect_are_readable_from_points(bench):
    import trimesh

    def load(path):
        if path.endswith(".npy"):
            return np.load(path)
        cloud = trimesh.load(path)
        return np.concatenate([cloud.vertices, cloud.colors[:, :3] / 255.0], axis=1)

    palette = {name: np.array(rgb) / 255.0 for name, rgb in COLORS.items()}
    checked = 0
    for row, meta in rows(bench, "point_cloud", "qa", "test"):
        points = load(row["media"][0]["path"])
        assert points.shape == (1024, 6)
        answer = row["messages"][-1]["content"]
        if meta["question_type"] == "color":
            rgb = points[:, 3:].mean(0)
            assert min(palette, key=lambda c: np.linalg.norm(palette[c] - rgb)) == answer
        elif meta["question_type"] == "aspect":
            extent = points[:, :3].max(0) - points[:, :3].min(0)
            assert ("tall" if extent[2] > max(extent[:2]) else "flat") == answer
        else:
            continue
        checked += 1
    assert checked >= 60


def test_cross_answers_follow_from_the_inputs(bench):
    for row, meta in zip(bench.cross_modal_test(), bench.metadata("cross", "cross", "test")):
        answer, attrs = row["messages"][-1]["content"], meta["attributes"]
        if meta["question_type"] == "same_color":
            assert (attrs[0]["color"] == attrs[1]["color"]) == (answer == "yes")
        elif meta["question_type"] == "which_shape":
            shape = re.search(r"shows a (\w+)", row["question"]).group(1)
            assert [a["shape"] == shape for a in attrs] == [answer == "image", answer == "video"]
        elif meta["question_type"] == "odd_color":
            colours = [a["color"] for a in attrs]
            odd = [i for i, c in enumerate(colours) if colours.count(c) == 1]
            assert len(odd) == 1 and ["image", "video", "point cloud"][odd[0]] == answer


# ---- building: cache, determinism, atomicity -------------------------------------------------
def annotations(root: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((root / "annotations").glob("*.jsonl"))}


def test_build_is_deterministic_and_reused(tmp_path):
    first = build_embedded_benchmark(tmp_path / "a", seed=3, sizes=TINY, progress=False)
    second = build_embedded_benchmark(tmp_path / "b", seed=3, sizes=TINY, progress=False)
    other = build_embedded_benchmark(tmp_path / "c", seed=4, sizes=TINY, progress=False)
    assert annotations(first.root) == annotations(second.root)
    assert annotations(first.root) != annotations(other.root)
    assert first.content_hash == second.content_hash != other.content_hash
    for name in ("point_cloud/train/qa-00000", "audio/train/qa-00000"):
        a, b = (sorted(r.root.glob(name + ".*"))[0].read_bytes() for r in (first, second))
        assert a == b
    stamp = (first.root / "manifest.json").stat().st_mtime_ns
    again = build_embedded_benchmark(tmp_path / "a", seed=3, sizes=TINY, progress=False)
    assert again.root == first.root and (first.root / "manifest.json").stat().st_mtime_ns == stamp
    # A different benchmark at the same root needs overwrite=True.
    with pytest.raises(ValueError, match="overwrite=True"):
        build_embedded_benchmark(tmp_path / "a", seed=5, sizes=TINY, progress=False)
    rebuilt = build_embedded_benchmark(tmp_path / "a", seed=5, sizes=TINY, progress=False, overwrite=True)
    assert rebuilt.seed == 5 and not list(tmp_path.glob(".a.*"))


def test_same_benchmark_with_and_without_espeak_on_path(tmp_path, monkeypatch):
    """No optional system package changes the content: spoken words come from the shipped
    recordings, so a machine with `espeak-ng` and one without build byte-identical benchmarks."""
    import shutil

    sizes = dataclasses.replace(TINY, caption_train=8, speech_fraction=0.5)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    called = tmp_path / "espeak-called"
    # An espeak-ng that would speak differently (and leaves a trace) if the build ever called it.
    (fake_bin / "espeak-ng").write_text(f"#!/bin/sh\ntouch {called}\nexit 1\n")
    (fake_bin / "espeak-ng").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{__import__('os').environ['PATH']}")
    assert shutil.which("espeak-ng") == str(fake_bin / "espeak-ng")
    with_espeak = build_embedded_benchmark(
        tmp_path / "with", seed=1, sizes=sizes, modalities=("audio",), progress=False
    )
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert shutil.which("espeak-ng") is None
    without = build_embedded_benchmark(
        tmp_path / "without", seed=1, sizes=sizes, modalities=("audio",), progress=False
    )
    assert not called.exists()
    assert with_espeak.content_hash == without.content_hash == builder_module.content_hash(without.root)
    spoken = [m for m in without.metadata("audio", "caption", "train") if m["attributes"]["kind"] == "speech"]
    assert spoken, "the benchmark must hold spoken clips"
    # The hash names the bytes: change one media file and it changes.
    wav = sorted((without.root / "audio" / "train").glob("*.wav"))[0]
    wav.write_bytes(wav.read_bytes()[:-2] + b"\x01\x00")
    assert builder_module.content_hash(without.root) != without.content_hash


def test_default_folder_is_in_the_cache_and_keyed(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MERA_CACHE", str(tmp_path / "cache"))
    bench = build_embedded_benchmark(seed=7, sizes=TINY, modalities=("point_cloud",), progress=False)
    assert bench.root.parent == (tmp_path / "cache" / "embedded").resolve()
    assert re.fullmatch(r"v\w+-7-[0-9a-f]{12}", bench.root.name)
    assert bench.modalities == ["point_cloud"]
    assert len(bench.cross_modal_test()) == 0  # no cross-modal family with point clouds alone
    manifest = json.loads((bench.root / "manifest.json").read_text())
    assert manifest["sizes"] == dataclasses.asdict(TINY) and manifest["counts"]["point_cloud-qa-test"] == 2
    # The curriculum's order does not change the benchmark: sequential and reverse runs share it.
    assert default_benchmark_dir(1, TINY, MODALITIES) == default_benchmark_dir(1, TINY, MODALITIES[::-1])
    bigger = build_embedded_benchmark(
        seed=7,
        sizes=dataclasses.replace(TINY, qa_test=4),
        modalities=("point_cloud",),
        progress=False,
    )
    assert bigger.root != bench.root


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    from hf_mera.data.embedded.video import VideoGenerator

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(VideoGenerator, "write", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_embedded_benchmark(tmp_path / "b", sizes=TINY, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_foreign_folder_and_bad_arguments(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an embedded benchmark"):
        build_embedded_benchmark(tmp_path / "mine", sizes=TINY, progress=False, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").exists()
    with pytest.raises(ValueError, match="known"):
        build_embedded_benchmark(tmp_path / "x", sizes=TINY, modalities=("smell",), progress=False)
    with pytest.raises(ValueError, match="non-negative"):
        EmbeddedSizes(qa_train=-1)
    with pytest.raises(ValueError, match="not a built embedded benchmark"):
        EmbeddedBenchmark(tmp_path)
    assert builder_module.GENERATOR_VERSION


def test_concurrent_build_keeps_the_first_published_copy(tmp_path):
    target, late = tmp_path / "bench", tmp_path / ".bench.building-x"
    for folder, text in ((target, "first"), (late, "second")):
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({"who": text}))
    publish(late, target, replace=False)
    assert json.loads((target / "manifest.json").read_text()) == {"who": "first"} and not late.exists()
