"""The Replay plugin: stage i trains on Dᵢ ∪ Rᵢ, Rᵢ = r % of each task of D₁…Dᵢ₋₁, seeded."""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import training_data

from hf_mera.continual.plugins import StageContext, build_plugin
from hf_mera.continual.plugins.replay import ReplayPlugin
from hf_mera.data.replay import replay_size

ORDER = ("image", "video", "audio", "point_cloud")
SIZES = {m: (40 + 10 * k, 23 + k) for k, m in enumerate(ORDER)}  # (captions, QA) per modality


@pytest.fixture(scope="module")
def train_sets():
    return {m: training_data(m, *SIZES[m]) for m in ORDER}


def stage(index: int, train_sets, seed: int = 0) -> StageContext:
    return StageContext(index=index, modality=ORDER[index - 1], order=ORDER, seed=seed, train_sets=train_sets)


def test_stage_one_trains_on_its_own_data_alone(train_sets):
    plugin = build_plugin("replay", ratio=0.1)
    assert isinstance(plugin, ReplayPlugin) and plugin.name == "replay"
    data = train_sets["image"]
    assert plugin.transform_train_dataset(data, stage(1, train_sets)) is data
    assert plugin.record is None
    # Stage 1 needs no earlier data, so no train_sets either.
    assert plugin.transform_train_dataset(data, StageContext(index=1, modality="image", order=ORDER)) is data


@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.5])
def test_stage_i_adds_r_percent_of_every_task_of_every_earlier_modality(train_sets, ratio):
    plugin = ReplayPlugin(ratio=ratio)
    context = stage(3, train_sets)  # audio, after image and video
    current = train_sets["audio"]
    mixed = plugin.transform_train_dataset(current, context)

    # Dᵢ first, whole and in order; then Rᵢ.
    assert mixed["id"][: len(current)] == current["id"]
    replayed = mixed.select(range(len(current), len(mixed)))
    assert set(replayed["modality"]) == {"image", "video"}  # D₁…Dᵢ₋₁: never the current modality
    counts = Counter(zip(replayed["modality"], replayed["task"]))
    for modality in ("image", "video"):
        n_caption, n_qa = SIZES[modality]
        assert counts[modality, "caption"] == replay_size(ratio, n_caption)
        assert counts[modality, "qa"] == replay_size(ratio, n_qa)
    assert len(set(replayed["id"])) == len(replayed)  # drawn without replacement
    assert set(replayed["id"]) <= set(train_sets["image"]["id"]) | set(train_sets["video"]["id"])
    assert sorted(replayed["id"]) == sorted(
        i for tasks in plugin.record.ids.values() for ids in tasks.values() for i in ids
    )
    assert mixed.column_names == current.column_names


def test_replay_is_seeded_by_the_run_seed(train_sets):
    def replayed_ids(seed: int, index: int = 4) -> list[str]:
        current = train_sets[ORDER[index - 1]]
        mixed = ReplayPlugin(ratio=0.1).transform_train_dataset(current, stage(index, train_sets, seed))
        return mixed["id"][len(current) :]

    assert replayed_ids(0) == replayed_ids(0)
    assert replayed_ids(0) != replayed_ids(1)
    # Each (seed, modality, task) has its own stream: stage 4 replays stage 3's image rows and more.
    assert set(replayed_ids(0, index=3)) < set(replayed_ids(0, index=4))


def test_bad_ratio_and_missing_train_sets_name_the_plugin(train_sets):
    for ratio in (0, -0.1, 1.5, "10%", True):
        with pytest.raises(ValueError, match="Plugin 'replay': ratio"):
            ReplayPlugin(ratio=ratio)
    with pytest.raises(ValueError, match=r"Plugin 'replay'.*train_sets"):
        ReplayPlugin().transform_train_dataset(
            train_sets["video"], StageContext(index=2, modality="video", order=ORDER)
        )
