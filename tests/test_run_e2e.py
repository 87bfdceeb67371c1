"""Whole curricula on tiny settings: the merge on real checkpoints, resume after kill -9, the CLI.

These run real training phases end to end and are marked slow (CI runs them).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from helpers import (
    REPO,
    TRAIN_ROWS_PER_TASK,
    checkpoints,
    is_llm_key,
    kill_minus_9_once,
    load_state,
    nested_close,
    phase,
    run_in_process,
    run_to_the_end,
    scores_of,
    start_cli,
    tiny_overrides,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_merge_equals_hand_computed(data_root, tmp_path, lora):
    """On the checkpoints of a real 2-stage run: θ₂ = θ₁ + ΔW₂ / 2 on the LLM, connectors from stage 2."""
    out = tmp_path / "run"
    run_in_process(tiny_overrides(data_root, out, lora=lora) + ["--methods", "[{name: MERA, type: mera}]"])
    (merge_dir,) = checkpoints(out, "merge-audio")
    vanilla_dir = out / "checkpoints" / phase(merge_dir)["parent"]
    start_key = phase(merge_dir)["description"]["previous"]
    (start_dir,) = [p for p in (out / "checkpoints").glob(f"*-{start_key}")]
    merged, vanilla, start = load_state(merge_dir), load_state(vanilla_dir), load_state(start_dir)
    assert merged.keys() == vanilla.keys() == start.keys()
    if lora:
        from safetensors.torch import load_file

        deltas = load_file(str(vanilla_dir / "lora_deltas.safetensors"))
        assert deltas and all(is_llm_key(k) for k in deltas)
    n_llm = 0
    for key, value in merged.items():
        if not is_llm_key(key):
            assert torch.equal(value, vanilla[key]), key  # encoders and connectors: the stage's own
            continue
        n_llm += 1
        if lora and key in deltas:
            expected = start[key] + deltas[key] / 2
        elif lora:
            expected = start[key]  # untouched by LoRA
            assert torch.equal(vanilla[key], start[key]), key
        else:
            expected = start[key] + (vanilla[key] - start[key]) / 2
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6, msg=key)
    assert n_llm > 0
    # The LLM really moved in stage 2 and the merge landed halfway.
    key = "model.language_model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(vanilla[key], start[key]) and not torch.equal(merged[key], vanilla[key])
    # Stage 2 realigned both connectors on replay from both modalities, nothing else.
    (realign_dir,) = checkpoints(out, "realign-audio")
    realigned = load_state(realign_dir)
    for key, value in realigned.items():
        assert torch.equal(value, merged[key]) != key.startswith("model.connectors."), key
    # Each stage is published as its own hub-format folder (hard links), with what it scored.
    stage = out / "mera" / "stage-2-audio"
    assert stage.is_dir() and not stage.is_symlink()
    info = json.loads((stage / "stage.json").read_text())
    assert info["seen"] == ["image", "audio"] and set(info["scores"]) == {"image", "audio"}
    manifest = json.loads((data_root / "manifest.json").read_text())
    assert info["benchmark_hash"] == manifest["content_hash"]
    # The data is part of every phase key: all phases descend from a backbone keyed by the hash.
    (backbone_dir,) = checkpoints(out, "backbone")
    assert phase(backbone_dir)["description"]["benchmark_hash"] == manifest["content_hash"]
    assert torch.equal(
        load_state(stage)["model.connectors.audio.linear_1.weight"],
        realigned["model.connectors.audio.linear_1.weight"],
    )
    # Realignment replays r % of every task of every modality seen so far (D1 and D2), no other rows.
    from hf_mera.data.replay import ReplayRecord, replay_size

    replay = ReplayRecord.from_dict(json.loads((realign_dir / "replay_ids.json").read_text()))
    per_task = replay_size(replay.ratio, TRAIN_ROWS_PER_TASK)
    assert replay.ratio == 0.1 and per_task == 2
    assert set(replay.ids) == {"image", "audio"}
    for modality, tasks in replay.ids.items():
        assert set(tasks) == {"caption", "qa"}, modality
        for task, ids in tasks.items():
            assert len(ids) == len(set(ids)) == per_task, (modality, task)
            assert all(i.startswith(f"embedded/{modality}/{task}/train/") for i in ids), ids
    assert len(replay) == 4 * per_task


def test_kill_minus_9_then_resume_matches_an_uninterrupted_run(data_root, tmp_path):
    methods = ["--methods", "[{name: Experts, type: experts}, {name: MERA, type: mera}]"]
    # Uninterrupted reference.
    reference = tmp_path / "reference"
    run_to_the_end(tiny_overrides(data_root, reference) + methods)
    # Killed mid-run once a few phases are complete, then the same command again.
    resumed = tmp_path / "resumed"
    kill_minus_9_once(
        tiny_overrides(data_root, resumed) + methods,
        lambda: len(list(resumed.glob("checkpoints/*/phase.json"))) >= 4,
    )
    assert not (resumed / "results.json").exists()  # really killed mid-run
    complete_before = {
        p.parent.name: p.stat().st_mtime_ns for p in (resumed / "checkpoints").glob("*/phase.json")
    }
    assert len(complete_before) >= 4
    out = run_to_the_end(tiny_overrides(data_root, resumed) + methods)
    # The resumed run reused every phase finished before the kill (untouched on disk) and trained
    # exactly the phases that were missing.
    logged = re.findall(r"phase (\S+) \((\w+)\): (reusing|running)", out)
    reused = {f"{name}-{key}" for name, key, verb in logged if verb == "reusing"}
    trained = [f"{name}-{key}" for name, key, verb in logged if verb == "running"]
    assert set(complete_before) <= reused, set(complete_before) - reused
    assert not set(trained) & set(complete_before), set(trained) & set(complete_before)
    all_phases = {p.parent.name for p in (resumed / "checkpoints").glob("*/phase.json")}
    assert sorted(trained) == sorted(all_phases - set(complete_before))
    for name, stamp in complete_before.items():
        assert (resumed / "checkpoints" / name / "phase.json").stat().st_mtime_ns == stamp, name
    # Same phases, same weights, same metrics.
    ref_ckpts = sorted(p.name for p in checkpoints(reference, "*"))
    assert ref_ckpts == sorted(p.name for p in checkpoints(resumed, "*"))
    assert not list((resumed / "checkpoints").glob(".tmp-*"))
    for name in ref_ckpts:
        a, b = load_state(reference / "checkpoints" / name), load_state(resumed / "checkpoints" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert scores_of(reference) == scores_of(resumed)


def test_bad_config_fails_before_any_work(tmp_path):
    proc = start_cli(["--training.realign.max_stepz", "3", "--output_dir", str(tmp_path / "out")])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "training.realign.max_stepz" in out
    assert not (tmp_path / "out").exists()


def test_two_cpu_processes_match_one(data_root, tmp_path):
    """`accelerate launch` with 2 CPU processes (DDP over gloo, batch 4 each) trains the same weights
    and scores as one process with batch 8; only the main process writes."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    proc = start_cli(tiny_overrides(data_root, single, batch=8))
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "hf_mera" / "configs" / "accelerate" / "cpu-ddp-2.yaml"),
    ]  # fmt: skip
    proc = start_cli(tiny_overrides(data_root, ddp, batch=4), launcher=launcher)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    assert "2 process(es)" in out and "this is process 1" in out
    assert not list((ddp / "checkpoints").glob(".tmp-*"))

    def by_phase(root: Path) -> dict[str, list[Path]]:
        phases: dict[str, list[Path]] = {}
        for path in checkpoints(root, "*"):
            phases.setdefault(phase(path)["name"], []).append(path)
        return phases

    a, b = by_phase(single), by_phase(ddp)
    assert a.keys() == b.keys()
    compared = 0
    for name, paths in a.items():
        assert len(paths) == len(b[name]), name
        if len(paths) != 1:  # e.g. stage 2 of each method: matched through results below
            continue
        sa, sb = load_state(paths[0]), load_state(b[name][0])
        for key in sa:
            # Float summation order differs (threads, gradient all-reduce), nothing else.
            torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=1e-4, msg=f"{name}: {key}")
        compared += 1
    assert compared >= 5
    for (method_a, *scores_a), (method_b, *scores_b) in zip(scores_of(single), scores_of(ddp)):
        assert method_a == method_b
        assert json.dumps(scores_a) == json.dumps(scores_b) or nested_close(scores_a, scores_b)


def test_quickstart_end_to_end_mera_keeps_more_than_fine_tuning(tmp_path):
    """The main job as the README launches it (`accelerate launch hf_mera/run.py`), on the quickstart
    config with fewer examples and steps (about 5 minutes here; the full run is measured in bench/):
    it prints the tables, writes results.json, report.md and the plots, saves every stage in hub
    format, and MERA keeps visibly more of the old modalities than Fine-Tuning (paper Table 2)."""
    from transformers import AutoModelForCausalLM

    import hf_mera  # noqa: F401  (registers the Auto classes)

    out = tmp_path / "quickstart"
    overrides = [
        "--output_dir", str(out),
        "--data.root", str(tmp_path / "bench"),
        "--data.embedded", "{caption_train: 200, qa_train: 200, caption_test: 40, qa_test: 40, cross_test: 40}",
        "--model.backbone.text_pretrain_steps", "120", "--model.backbone.text_instruct_steps", "180",
        "--training.connector_pretrain.max_steps", "60",
        "--training.instruction_tuning.max_steps", "120",
        "--training.realign.max_steps", "40",
    ]  # fmt: skip
    proc = start_cli(overrides, launcher=[sys.executable, "-m", "accelerate.commands.launch"])
    log, _ = proc.communicate(timeout=1500)
    assert proc.returncode == 0, log[-3000:]
    assert "Backward Relative Gain over stages" in log and "| MERA (10%) | sequential |" in log
    # The benchmark's content hash is printed when the run starts and written beside the numbers.
    content_hash = json.loads((tmp_path / "bench" / "manifest.json").read_text())["content_hash"]
    assert f"(content hash {content_hash})" in log
    assert json.loads((out / "results.json").read_text())["benchmark_hash"] == content_hash
    assert content_hash in (out / "report.md").read_text()
    for name in ("results.json", "report.md", "backward_relative_gain.png", "forward_relative_gain.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "results.json").read_text())["summary"]
    mera = summary["MERA (10%)"]["sequential"]
    fine_tuning = summary["Fine-Tuning"]["sequential"]
    assert len(mera["backward_relative_gain"]) == 4
    assert mera["backward_mean"] > fine_tuning["backward_mean"] + 15, (mera, fine_tuning)
    stage = out / "mera-10" / "stage-4-point_cloud"
    model = AutoModelForCausalLM.from_pretrained(stage)
    assert sorted(model.config.modalities) == ["audio", "image", "point_cloud", "video"]
