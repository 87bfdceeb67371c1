"""Sharded training on this machine, against a 1-process run of the same curriculum:

- FSDP2: 2 processes of torch's `fully_shard` over gloo, through accelerate's FSDP plugin
  (`hf_mera/configs/accelerate/cpu-fsdp-2.yaml`);
- DeepSpeed ZeRO-3: 2 processes on DeepSpeed's CPU accelerator over gloo
  (`cpu-deepspeed-zero3-2.yaml`; skipped when deepspeed is not installed), with Replay and
  realignment (batches of mixed modalities) and EWC (its penalty on ZeRO-3's partitioned weights).

The curriculum (image → audio, LoRA, a few steps) covers every phase: connector pre-training, LoRA
instruction tuning with EWC (penalty during training, Fisher after it) and Replay, LPM's merge (its
Grams through θₖ,vanilla), realignment, PathWeave's adapters, evaluation with generation and stage
publishing. A sharded run must save whole checkpoints (gathered full state dicts) that match the
unsharded run's within float tolerance, the same scores and the same logged EWC penalty.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, load_state, nested_close, scores_of, start_cli, tiny_overrides

pytestmark = pytest.mark.slow

# λ = 1e6: EWC's penalty (λ/2·Σ F (θ − θ₁)², about 1e-7 per unit of λ after stage 2's 3 LoRA steps) then
# steers stage 2's updates, so a wrong or missing penalty gradient moves its checkpoints and logged penalty.
EWC = (
    "{name: EWC+Replay+LPM, type: ewc, merge: lpm, realign: true, "
    "plugins: [{name: ewc, lambda_: 1000000}, {name: replay, ratio: 0.1}]}"
)
# Replay's image rows among audio's and realignment's mixed rows: under ZeRO-3 some process's batch
# lacks a modality (the all-gathers must still match, `run_absent_modalities`).
MERGE = "{name: Replay+LPM+realign, type: mera, merge: lpm, realign: true, plugins: [{name: replay, ratio: 0.25}]}"
PATHWEAVE = "{name: PathWeave, type: pathweave}"
# Float summation order differs (threads, all-gather / reduce-scatter instead of one process's
# sums); over a few Adam steps that stays below this (measured: at most 2.1e-6 here).
ATOL = 1e-4
CONFIGS = REPO / "hf_mera" / "configs" / "accelerate"


def overrides(data_root: Path, out: Path, batch: int, methods: list[str]) -> list[str]:
    # LoRA dropout off: its masks depend on how a batch is split over processes.
    extra = [
        "--training.instruction_tuning.extra",
        "{lora_dropout: 0.0}",
        "--methods",
        f"[{', '.join(methods)}]",
    ]
    return tiny_overrides(data_root, out, lora=True, batch=batch) + extra


def chain(root: Path, stage_dir: Path) -> list[Path]:
    """The phase checkpoints a published stage descends from, newest first."""
    name = json.loads((stage_dir / "stage.json").read_text())["checkpoint"]
    found = []
    while name:
        path = root / "checkpoints" / name
        found.append(path)
        name = json.loads((path / "phase.json").read_text())["parent"]
    return found


def run(args: list[str], launcher=()) -> str:
    proc = start_cli(args, launcher=launcher)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    return out


def launch(config: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config)]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory) -> Path:
    """One process, batch 8, every method either sharded run uses."""
    out = tmp_path_factory.mktemp("single") / "run"
    log = run(overrides(data_root, out, 8, [EWC, MERGE, PATHWEAVE]))
    (out.parent / "log.txt").write_text(log)
    return out


def assert_gathered(out: str, trainers: set[str]) -> None:
    """Every phase trainer really trained sharded parameters and gathered the whole model after."""
    gathered = re.findall(
        r"(\w+Trainer): gathered the whole trained model \((\d+) tensors\) from (\d+) sharded", out
    )
    assert {name for name, _, _ in gathered} == trainers
    assert all(int(count) > 0 for _, _, count in gathered)


def test_fsdp_two_processes_match_one(data_root, reference, tmp_path):
    sharded = tmp_path / "fsdp"
    out = run(overrides(data_root, sharded, 4, [EWC, PATHWEAVE]), launcher=launch("cpu-fsdp-2.yaml"))
    assert "2 process(es), DistributedType.FSDP, this is process 1" in out
    assert_gathered(out, {"ConnectorPretrainTrainer", "InstructionTuningTrainer", "RealignTrainer"})
    assert not list((sharded / "checkpoints").glob(".tmp-*"))
    phases, extra_files = compare_runs(reference, sharded, methods=2)
    assert {"pretrain-audio", "it-image", "it-audio", "merge-audio", "realign-audio"} <= phases
    assert extra_files == {"lora_deltas.safetensors", "plugin-ewc.safetensors"}
    assert_same_penalties(reference, out)


def test_deepspeed_zero3_two_processes_match_one(data_root, reference, tmp_path):
    """ZeRO-3: connector pre-training, LoRA instruction tuning with EWC and Replay, LPM's merge of the
    gathered checkpoints, realignment, PathWeave. Replay and realignment mix modalities in a batch, so
    a process's batch of 4 often lacks one; every process still runs every connector
    (`run_absent_modalities`), else ZeRO-3's per-module all-gathers stop matching (gloo aborts).
    EWC's penalty reads ZeRO-3's partitioned LoRA factors inside a gather, with its gradient computed
    there (`precomputed_grad`): stage 2's checkpoints, Fisher and anchor and the logged penalty match."""
    pytest.importorskip("deepspeed")
    sharded = tmp_path / "zero3"
    out = run(
        overrides(data_root, sharded, 4, [EWC, MERGE, PATHWEAVE]),
        launcher=launch("cpu-deepspeed-zero3-2.yaml"),
    )
    assert "2 process(es), DistributedType.DEEPSPEED, this is process 1" in out
    assert_gathered(out, {"ConnectorPretrainTrainer", "InstructionTuningTrainer", "RealignTrainer"})
    # Realignment's rows mix both modalities: every process runs both connectors on every step
    # (without it this run aborts: "Received data size doesn't match expected size").
    assert re.search(
        r"RealignTrainer: ZeRO-3: every step runs the modules of (audio, image|image, audio) \(", out
    )
    phases, extra_files = compare_runs(reference, sharded, methods=3)
    assert {"pretrain-audio", "it-image", "it-audio", "merge-audio", "realign-audio"} <= phases
    assert extra_files == {"lora_deltas.safetensors", "plugin-ewc.safetensors"}
    assert_same_penalties(reference, out)


def assert_same_penalties(reference: Path, out: str) -> None:
    """EWC's stage-2 penalty as logged (`plugin_penalty`): the whole penalty on every process, as one
    process logs it (4 significant digits)."""

    def penalties(log: str) -> list[float]:
        return [float(v) for v in re.findall(r"'plugin_penalty': '?([0-9.e+-]+)", log)]

    ours, theirs = penalties((reference.parent / "log.txt").read_text()), penalties(out)
    assert theirs and len(theirs) == len(ours) and any(v > 0 for v in theirs)
    torch.testing.assert_close(torch.tensor(theirs), torch.tensor(ours), rtol=1e-3, atol=0)


def compare_runs(single: Path, sharded: Path, methods: int) -> tuple[set[str], set[str]]:
    """Every phase checkpoint behind every stage `sharded` published, the extra tensors saved beside
    them and its scores equal `single`'s within `ATOL`; returns the phases compared and the extra
    files' names."""
    from safetensors.torch import load_file

    compared, extra_files, stages = set(), set(), sorted(sharded.glob("*/stage-*"))
    assert len(stages) == 2 * methods  # two stages each
    for twin in stages:
        stage_dir = single / twin.relative_to(sharded)
        assert (twin / "README.md").is_file() and (twin / "stage.json").is_file()  # published, with a card
        ours, theirs = chain(single, stage_dir), chain(sharded, twin)
        assert [p.name.rsplit("-", 1)[0] for p in ours] == [p.name.rsplit("-", 1)[0] for p in theirs]
        for a, b in zip(ours, theirs):
            if a.name in compared:
                continue
            compared.add(a.name)
            # LoRA's ΔW (what the merge folds in) and EWC's Fisher and anchor, both taken from the
            # gathered model after training, match too.
            for extra in sorted(a.glob("*.safetensors")):
                if extra.name == "model.safetensors":
                    continue
                extra_files.add(extra.name)
                ta, tb = load_file(str(extra)), load_file(str(b / extra.name))
                assert ta.keys() == tb.keys() and ta, extra
                for key in ta:
                    torch.testing.assert_close(tb[key], ta[key], rtol=1e-3, atol=ATOL, msg=f"{extra}: {key}")
            sa, sb = load_state(a), load_state(b)
            noisy = stage_dir.parent.name == "pathweave" and a.name.startswith("it-audio-")
            assert sa.keys() == sb.keys(), a.name  # a whole checkpoint: no key lost to sharding
            for key in sa:
                assert sa[key].shape == sb[key].shape, (a.name, key)
                # PathWeave's gate is noisy while training (from stage 2 on): each process draws
                # its own noise for its half of the batch, so its stage-2 instruction tuning can only
                # agree in keys and shapes.
                if noisy:
                    assert torch.isfinite(sb[key]).all(), (a.name, key)
                    continue
                torch.testing.assert_close(sb[key], sa[key], rtol=0, atol=ATOL, msg=f"{a.name}: {key}")
    phases = {name.rsplit("-", 1)[0] for name in compared}
    ours = {method: scores for method, *scores in scores_of(single)}
    for method, *scores in scores_of(sharded):
        assert nested_close(ours[method], scores), method
    return phases, extra_files
