"""bench/sensitivity.py (issue #17): its grid entries are valid curriculum methods, every run it starts
is scored on val only, and its tables from finished runs (fake results.json files, as
test_compare_methods_report.py) give each grid value's mean Backward / Forward RG with t intervals."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from hf_mera.continual.curriculum import load_run_config
from hf_mera.evaluation.intervals import t_interval

ORDER = ["image", "audio"]
EXPERT = {"image": {"caption": 100.0, "qa": 0.5}, "audio": {"caption": 100.0, "qa": 0.5}}
GRIDS = {"ewc_lambda": [1.0, 100.0], "replay_ratio": [0.05, 0.1], "realign_epochs": [1.0, 32.0]}


def load_bench():
    sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location("sensitivity", REPO / "bench" / "sensitivity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sensitivity"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def scaled(scores: dict, share: float) -> dict:
    return {task: value * share for task, value in scores.items()}


def fake_run(method: str, backward: float, forward: float, seed: int) -> dict:
    """Two stages: stage 1 the image expert; at stage 2 image keeps `backward` of the expert's scores
    and the new audio reaches `forward` of its expert's."""
    stage2 = {"image": scaled(EXPERT["image"], backward), "audio": scaled(EXPERT["audio"], forward)}
    return {
        "method": method,
        "order": ORDER,
        "stages": [{"image": EXPERT["image"]}, stage2],
        "expert_scores": EXPERT,
        "order_name": "sequential",
        "metadata": {"seed": seed},
    }


def write_run(folder, runs, seed: int, split: str = "val", cross_modal: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    results = {"benchmark_hash": f"h{seed}", "runs": runs, "wall_time": {"seconds": {"total": 60.0 + seed}}}
    (folder / "results.json").write_text(json.dumps(results))
    evaluation = {"split": split, "cross_modal": cross_modal}
    (folder / "run_config.yaml").write_text(yaml.safe_dump({"seed": seed, "evaluation": evaluation}))


def shares(index: int, seed: int) -> tuple[float, float]:
    """Grid value `index`'s (backward, forward) share of the expert at `seed`: distinct per value and
    swinging with the seed, so a wrong row or a wrong interval shows."""
    return 0.5 + 0.1 * index + 0.03 * seed * (index + 1), 0.9 - 0.05 * index + 0.02 * seed


def test_report_gives_each_grid_value_its_val_gains_with_t_intervals(tmp_path):
    bench = load_bench()
    names = [bench.GRIDS[k].name(v) for k, values in GRIDS.items() for v in values]
    folders = {}
    for seed in (0, 1, 2):
        runs = [fake_run(name, *shares(i, seed), seed) for i, name in enumerate(names)]
        folders[("sequential", seed)] = tmp_path / f"sequential-seed{seed}"
        write_run(folders[("sequential", seed)], runs, seed)
    loaded, hashes = bench.compare_methods.load(folders)
    text = bench.report(loaded, hashes, GRIDS, ["sequential"], [0, 1, 2], "compare", {("sequential", 0): 61})

    # Per seed the mean over stages is (stage 1's 100 + stage 2's share) / 2, for both kinds of gain.
    def cells(index):
        per_seed = [shares(index, seed) for seed in (0, 1, 2)]
        return [t_interval([(100 + 100 * s[k]) / 2 for s in per_seed]) for k in (0, 1)]

    for index, (label, default) in enumerate(
        [
            ("1", "paper (C.2), comparison"),
            ("100", ""),
            ("5 %", ""),
            ("10 %", "paper, comparison"),
            ("1", "paper (Table 9)"),
            ("32", "compare.yaml, comparison"),
        ]
    ):
        backward, forward = cells(index)
        assert backward.n == 3 and backward.half_width > 0
        assert f"| {label} | {default} | {backward} | {forward} |" in text, (index, text)
    for title in ("#### EWC's λ", "#### Replay's ratio r", "#### MERA (10 %)'s realignment budget"):
        assert title in text
    assert "seed 0: `h0`, seed 1: `h1`, seed 2: `h2`" in text
    assert "Measured on the validation split" in text and "keeps the paper's defaults" in text
    assert "sequential seed 0: 61 s" in text

    # One seed: the single value, said to be one seed.
    one = bench.report(loaded, hashes, {"ewc_lambda": [100.0]}, ["sequential"], [1], "compare")
    assert f"| 100 |  | {(100 + 100 * shares(1, 1)[0]) / 2:.2f} (1 seed) |" in one


def test_grid_entries_are_valid_curriculum_methods():
    from trainers.validation import check_run

    bench = load_bench()
    grids = {knob: list(spec.grid) for knob, spec in bench.GRIDS.items()}
    methods = bench.grid_methods(grids)
    run = load_run_config("compare", ["--methods", "[" + ", ".join(methods) + "]", *bench.val_overrides([])])
    check_run(run)
    by_name = {m.name: m for m in run.methods}
    assert by_name["Experts"].type == "experts"
    assert len(by_name) == 1 + sum(len(v) for v in grids.values())
    lambdas = [m.plugins[0]["lambda_"] for m in run.methods if m.type == "ewc"]
    assert lambdas == [1, 10, 100, 1000, 10000]
    assert [m.replay_ratio for m in run.methods if m.type == "replay"] == [0.01, 0.05, 0.1, 0.2]
    mera = [m for m in run.methods if m.type == "mera"]
    assert [m.realign_epochs for m in mera] == [1, 4, 8, 16, 32]
    assert {m.replay_ratio for m in mera} == {0.1} and all(m.realign_ratio is None for m in mera)
    # The defaults the grids mark are the paper's and the comparison's config.
    assert run.training.realign.num_train_epochs == 32 and run.training.realign.max_steps <= 0
    assert by_name["EWC (λ 1)"].plugins == [{"name": "ewc", "lambda_": 1.0}]


def test_every_run_is_scored_on_val_and_a_test_run_is_refused(tmp_path, monkeypatch):
    bench = load_bench()
    commands = []

    class FakeRun:
        """Records the command and writes what the run would: its run_config.yaml and results.json."""

        returncode = 0

        def __init__(self, command, **kwargs):
            commands.append(command)
            run = load_run_config(command[2], command[3:])
            folder = Path(run.output_dir)
            names = [m.name for m in run.methods if m.type != "experts"]
            write_run(folder, [fake_run(n, 0.8, 0.9, run.seed) for n in names], run.seed)
            evaluation = {"split": run.evaluation.split, "cross_modal": run.evaluation.cross_modal}
            (folder / "run_config.yaml").write_text(yaml.safe_dump({"evaluation": evaluation}))

        def poll(self):
            return 0

    monkeypatch.setattr(bench.compare_methods.subprocess, "Popen", FakeRun)
    monkeypatch.setattr(bench.compare_methods.time, "sleep", lambda s: None)
    argv = ["--seeds", "0", "1", "--output-dir", str(tmp_path / "out"), "--ewc-lambdas", "1", "10"]
    argv += ["--replay-ratios", "--realign-epochs", "--model.backbone.text_pretrain_steps", "5"]
    argv += ["--training.realign.max_steps", "-1"]  # a negative value is an override's value too
    assert bench.main(argv) == 0
    assert len(commands) == 2
    for command in commands:
        run = load_run_config(command[2], command[3:])  # what hf_mera/run.py reads from this command
        assert run.evaluation.split == "val" and run.evaluation.cross_modal is False
        # the extra overrides reached the run
        assert run.model.backbone.text_pretrain_steps == 5 and run.training.realign.max_steps == -1
        assert [m.name for m in run.methods] == ["Experts", "EWC (λ 1)", "EWC (λ 10)"]
        assert command[-4:] == bench.VAL_ONLY

    with pytest.raises(SystemExit, match="evaluation.split: the sensitivity runs are scored on val only"):
        bench.main([*argv, "--evaluation.split", "test"])
    # A folder scored on test (the comparison's) is never read into these tables.
    write_run(tmp_path / "out" / "sequential-seed1", [fake_run("EWC (λ 1)", 0.8, 0.9, 1)], 1, split="test")
    with pytest.raises(SystemExit, match="split 'test'.*val-only runs"):
        bench.main([*argv, "--only-report"])
    # A run whose experts scored 0 wrote raw scores only: named, not a KeyError.
    expert = {
        "name": "Experts",
        "reference": True,
        "stages": [{"scores": {"image": {"caption": 3.0, "qa": 0.0}}}],
    }
    raw = {"benchmark_hash": "h1", "records": [expert], "relative_gain": None}
    (tmp_path / "out" / "sequential-seed1" / "results.json").write_text(json.dumps(raw))
    with pytest.raises(SystemExit, match=r"no Relative Gain \(the experts scored 0 on \['image/qa'\]\)"):
        bench.main([*argv, "--only-report"])
