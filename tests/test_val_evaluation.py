"""The validation split reaches the run (#17): `DataSource.val_sets` from the embedded benchmark, and
the evaluator scores `evaluation.split: val` (or `evaluate(..., split="val")`) on it, not on test."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from datasets import Dataset

from hf_mera.continual.curriculum import DataSection, EvaluationSection
from trainers.checkpoints import Checkpoint, phase_key
from trainers.data_sources import DataSource, load_data_source
from trainers.evaluation import StageEvaluator
from trainers.features import FeatureBank
from trainers.timing import PhaseClock

SIZES = {"caption_train": 3, "qa_train": 4, "caption_val": 2, "qa_val": 5, "caption_test": 1, "qa_test": 6}


def _sets(n_caption: int, n_qa: int) -> dict[str, Dataset]:
    return {
        "caption": Dataset.from_dict({"id": [f"c{i}" for i in range(n_caption)]}),
        "qa": Dataset.from_dict({"id": [f"q{i}" for i in range(n_qa)]}),
    }


def test_embedded_source_has_val_sets(tmp_path):
    section = DataSection(source="embedded", root=str(tmp_path / "b"), embedded={**SIZES, "cross_test": 0})
    data = load_data_source(section, ["audio"], seed=0)
    assert {t: len(d) for t, d in data.split("audio", "val").items()} == {"caption": 2, "qa": 5}
    assert {t: len(d) for t, d in data.split("audio", "test").items()} == {"caption": 1, "qa": 6}
    val_ids = {row["id"] for d in data.val("audio").values() for row in d}
    assert all("/val/" in i for i in val_ids)
    with pytest.raises(ValueError, match="evaluation.split"):
        data.split("audio", "dev")


def test_a_source_without_val_names_the_field():
    data = DataSource({"image": _sets(1, 1)}, {"image": _sets(1, 1)}, description={"source": "paper"})
    with pytest.raises(ValueError, match="evaluation.split: 'val'.*'paper'"):
        data.split("image", "val")


class _Workspace:
    is_main, progress = True, False

    def __init__(self, split: str):
        self.run = SimpleNamespace(evaluation=EvaluationSection(split=split, cross_modal=True))
        self.data = DataSource(
            {"image": _sets(1, 1)},
            {"image": _sets(3, 4)},
            cross_modal=_sets(1, 1)["qa"],
            val_sets={"image": _sets(2, 7)},
        )
        self.features = SimpleNamespace(ensure=lambda *a: None)
        self.clock = PhaseClock()

    def barrier(self):
        pass


@pytest.mark.parametrize(
    "split, expected", [("test", {"caption": 3, "qa": 4}), ("val", {"caption": 2, "qa": 7})]
)
def test_evaluator_scores_the_chosen_split(tmp_path, monkeypatch, split, expected):
    evaluator = StageEvaluator(_Workspace(split))
    # The score of a set is its size: which set was scored is then visible in the result.
    monkeypatch.setattr(evaluator, "score", lambda model, processor, ds, task, metric=None: len(ds))
    checkpoint = Checkpoint("k", tmp_path, {})
    assert evaluator.evaluate(checkpoint, ["image"], model=object(), processor=object()) == {
        "image": expected
    }
    settings = asdict(evaluator.settings)
    settings.pop("split")
    test_key = phase_key("k", {"evaluate": ["image"], **settings})
    # Test results keep the key they had before the split existed; val results have their own file.
    assert (Path(tmp_path) / f"eval-{test_key}.json").is_file() == (split == "test")
    if split == "val":  # a validation run never looks at the cross-modal test set
        assert evaluator.cross_modal_accuracy(checkpoint) is None
    # An explicit split (bench scripts) overrides the setting.
    other = "val" if split == "test" else "test"
    assert evaluator.evaluate(checkpoint, ["image"], object(), object(), split=other) != {"image": expected}


def test_the_feature_bank_covers_the_val_media():
    def media_sets(split):
        return {
            "qa": Dataset.from_list(
                [{"media": [{"modality": "audio", "path": f"/{split}/{i}.wav"}]} for i in range(2)]
            )
        }

    data = DataSource(
        {"audio": media_sets("train")}, {"audio": media_sets("test")}, val_sets={"audio": media_sets("val")}
    )
    bank = FeatureBank(None, data, None, Path("."), False)
    # An evaluation on val looks its media up in the bank: they must be encoded with the rest.
    assert {p.split("/")[1] for p in bank.modality_paths("audio")} == {"train", "val", "test"}
