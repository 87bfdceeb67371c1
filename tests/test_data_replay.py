"""Replay sampling: stratified per modality and task, seeded, and drawn from the right stages."""

from __future__ import annotations

import json

import pytest
from helpers import training_data

from hf_mera.data.replay import (
    ReplayRecord,
    replay_for_baseline,
    replay_for_realign,
    replay_size,
    sample_replay,
)

ORDER = ["image", "video", "audio", "point_cloud"]


@pytest.fixture(scope="module")
def data():
    return {m: training_data(m, 40 + 10 * k, 23 + k) for k, m in enumerate(ORDER)}


def test_replay_size_rounds_half_up_with_a_floor_of_one():
    assert [replay_size(0.1, n) for n in (0, 1, 4, 5, 15, 25, 40)] == [0, 1, 1, 1, 2, 3, 4]
    assert replay_size(0.01, 50) == 1 and replay_size(1.0, 7) == 7


def test_sample_replay_is_stratified_over_tasks(data):
    replay, record = sample_replay(data, 0.1, ["image", "video"], seed=0)
    assert record.ids.keys() == {"image", "video"}
    for modality in ("image", "video"):
        for task in ("caption", "qa"):
            n = sum(1 for t in data[modality]["task"] if t == task)
            assert len(record.ids[modality][task]) == replay_size(0.1, n)
            assert all(i.startswith(f"{modality}/{task}/") for i in record.ids[modality][task])
    assert sorted(replay["id"]) == sorted(i for m in record.ids.values() for ids in m.values() for i in ids)
    assert len(replay) == len(record)
    assert replay.column_names == data["image"].column_names


def test_sample_replay_is_seeded(data):
    a = sample_replay(data, 0.2, seed=1)[1]
    b = sample_replay(data, 0.2, seed=1)[1]
    c = sample_replay(data, 0.2, seed=2)[1]
    assert a.ids == b.ids and a.ids != c.ids
    # A modality's draw does not depend on which other modalities are replayed.
    alone = sample_replay(data, 0.2, ["video"], seed=1)[1]
    assert alone.ids["video"] == a.ids["video"]
    restored = ReplayRecord.from_dict(json.loads(json.dumps(a.to_dict())))
    assert restored == a


def test_baseline_replays_previous_stages_and_realign_includes_the_current_one(data):
    empty, record = replay_for_baseline(1, ORDER, data, 0.1)
    assert len(empty) == 0 and record.ids == {}
    _, baseline = replay_for_baseline(3, ORDER, data, 0.1)
    _, realign = replay_for_realign("audio", ORDER, data, 0.1)
    assert list(baseline.ids) == ["image", "video"]
    assert list(realign.ids) == ["image", "video", "audio"]
    assert realign.ids["image"] == baseline.ids["image"]


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, 10])
def test_bad_ratio_is_rejected(data, ratio):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        sample_replay(data, ratio)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        replay_for_realign(2, ORDER, data, ratio)


def test_bad_stage_modality_or_columns_are_rejected(data):
    with pytest.raises(ValueError, match="1..4"):
        replay_for_baseline(5, ORDER, data, 0.1)
    with pytest.raises(ValueError, match="not in the order"):
        replay_for_realign("smell", ORDER, data, 0.1)
    with pytest.raises(ValueError, match="No training data for modality 'smell'"):
        sample_replay(data, 0.1, ["smell"])
    with pytest.raises(ValueError, match="no 'task' column"):
        sample_replay({"image": data["image"].remove_columns("task")}, 0.1)
