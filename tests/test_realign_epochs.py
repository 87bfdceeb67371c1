"""A method's own realignment budget, `realign_epochs` (the sensitivity table of issue #17): read and
range-checked with the YAML, refused where it would change nothing, named in the realign phase's
description when set, and leaving that description (so every cached realign checkpoint) as it was
when unset."""

from __future__ import annotations

from dataclasses import asdict
from types import SimpleNamespace

import pytest

from hf_mera.continual.curriculum import load_run_config

EPOCHS_BUDGET = ["--training.realign.max_steps", "-1", "--training.realign.num_train_epochs", "8"]


def run_with(method: str, *overrides: str):
    return load_run_config("compare", ["--methods", f"[{method}]", *EPOCHS_BUDGET, *overrides])


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_budget_of_no_epochs_is_refused_when_the_yaml_is_read(value):
    with pytest.raises(ValueError, match=r"methods\[0\]\.realign_epochs.*> 0"):
        run_with(f"{{name: M, type: mera, realign_epochs: {value}}}")


def test_check_run_refuses_a_budget_that_would_change_nothing():
    from trainers.validation import check_run

    with pytest.raises(ValueError, match=r"methods\[0\]\.realign_epochs: .*does not realign"):
        check_run(run_with("{name: F, type: fine_tuning, realign_epochs: 4}"))
    # Trainer's max_steps wins over epochs: the field would be silently ignored.
    with pytest.raises(ValueError, match=r"methods\[0\]\.realign_epochs: training\.realign\.max_steps is 50"):
        check_run(run_with("{name: M, type: mera, realign_epochs: 4}", "--training.realign.max_steps", "50"))
    check_run(run_with("{name: F, type: fine_tuning, realign: true, realign_epochs: 4}"))


def realign_description(method_yaml: str, monkeypatch) -> dict:
    """The description `realign_phase` gives the phase for this method (replay draw stubbed out)."""
    import hf_mera.data.replay
    from trainers.merge_and_realign import MergeAndRealignTrainer
    from trainers.realign import realign_phase

    monkeypatch.setattr(hf_mera.data.replay, "replay_for_realign", lambda *a, **k: (None, None))
    run = run_with(method_yaml)
    trainer = SimpleNamespace(run=run, method=run.methods[0])
    seen = []
    realign_phase(
        SimpleNamespace(seen=["image", "video"], index=2, order=run.order, train_sets={}, modality="video"),
        None,
        ratio=0.1,
        settings=MergeAndRealignTrainer.realign_settings(trainer),
        seed=0,
        features=None,
        is_main=True,
        trainer_args=None,
        phase=lambda name, parent, description, build: seen.append(description),
    )
    return seen[0]


def test_the_budget_names_the_phase_and_its_absence_changes_nothing(monkeypatch):
    run = run_with("{name: M, type: mera}")
    unset = realign_description("{name: M, type: mera}", monkeypatch)
    # Byte for byte the description a run without the field has always given (cached phases reused).
    assert unset == {
        "phase": "realign",
        "modalities": ["image", "video"],
        "replay_ratio": 0.1,
        **asdict(run.training.realign),
    }
    assert unset["num_train_epochs"] == 8
    four = realign_description("{name: M, type: mera, realign_epochs: 4}", monkeypatch)
    assert four == {**unset, "num_train_epochs": 4.0}
    # The same budget as the config's is the same computation: it shares the checkpoint.
    assert realign_description("{name: M, type: mera, realign_epochs: 8}", monkeypatch) == unset
