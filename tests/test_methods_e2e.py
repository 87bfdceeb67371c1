"""Every method of the comparison on a tiny two-stage curriculum, end to end (slow; CI runs them).

What each method trains and keeps is checked on its real checkpoints; a killed EWC run resumes with
the Fisher and anchor an uninterrupted run had (the plugin's state travels with the checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import (
    checkpoints,
    is_llm_key,
    kill_minus_9_once,
    load_state,
    phase,
    run_in_process,
    run_to_the_end,
    tiny_overrides,
)

pytestmark = pytest.mark.slow

ORDER = ["image", "audio"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def comparison(data_root, tmp_path_factory):
    """One run with every method and switch of the comparison (they share the phases they can)."""
    output_dir = tmp_path_factory.mktemp("methods")
    methods = (
        "[{name: Experts, type: experts}, {name: FT, type: fine_tuning},"
        " {name: FT+Realign, type: fine_tuning, realign: true},"
        " {name: Replay, type: replay, replay_ratio: 0.25}, {name: EWC, type: ewc},"
        " {name: EProj, type: eproj}, {name: PathWeave, type: pathweave},"
        " {name: MERA, type: mera}, {name: Merge only, type: mera, realign: false},"
        " {name: Realign only, type: mera, merge: none},"
        " {name: TIES, type: mera, merge: {method: ties, density: 0.5}, realign: false},"
        " {name: LPM, type: mera, merge: {method: lpm, gram_samples: 4}, realign: false}]"
    )
    run_in_process(tiny_overrides(data_root, output_dir) + ["--methods", methods])
    return output_dir


def stage_folder(output_dir: Path, method: str, index: int) -> Path:
    from trainers.stage_folder import slug

    return output_dir / slug(method) / f"stage-{index}-{ORDER[index - 1]}"


def test_every_method_reports_every_stage(comparison):
    # Tiny models score 0, so results.json keeps the raw records (no Relative Gain without S_sup).
    records = json.loads((comparison / "results.json").read_text())["records"]
    names = [record["name"] for record in records]
    assert names == [
        "Experts", "FT", "FT+Realign", "Replay", "EWC", "EProj", "PathWeave", "MERA", "Merge only",
        "Realign only", "TIES", "LPM",
    ]  # fmt: skip
    for record in records[1:]:
        assert [stage["modality"] for stage in record["stages"]] == ORDER, record["name"]


def test_mera_realigns_from_stage_two_only_and_its_switches_drop_one_step(comparison):
    realigned = {phase(p)["description"]["modalities"][-1] for p in checkpoints(comparison, "realign")}
    assert realigned == {"audio"}  # nothing to realign to at stage 1 (paper Table 11)
    merges = [p for p in checkpoints(comparison, "merge") if "schedule" in phase(p)["description"]]
    assert len(merges) == 1 and phase(merges[0])["description"]["stage"] == 2  # MERA and Merge only share it
    # A stage folder is its final phase's checkpoint: realigned, merged, or instruction-tuned only.
    finals = {"MERA": "realign-audio-", "Merge only": "merge-audio-", "Realign only": "realign-audio-"}
    for method, final in finals.items():
        info = json.loads((stage_folder(comparison, method, 2) / "stage.json").read_text())
        assert info["checkpoint"].startswith(final), (method, info["checkpoint"])
    realign_only = json.loads((stage_folder(comparison, "Realign only", 2) / "stage.json").read_text())
    parent = phase(comparison / "checkpoints" / realign_only["checkpoint"])["parent"]
    assert parent.startswith("it-audio-")  # realigned straight after instruction tuning, no merge


def test_eproj_never_changes_the_llm(comparison):
    backbone = load_state(checkpoints(comparison, "backbone")[0])
    for index in (1, 2):
        state = load_state(stage_folder(comparison, "EProj", index))
        for key, value in backbone.items():
            if is_llm_key(key) and "embed_tokens" not in key and "lm_head" not in key:
                assert torch.equal(state[key], value), key
    # The connectors did train in the connector-only instruction tuning.
    it = checkpoints(comparison, "eproj")
    assert [phase(p)["description"]["phase"] for p in it] == ["connector_instruction_tuning"] * 2


def test_pathweave_stage_one_is_the_expert_and_its_adapters_start_at_stage_two(comparison):
    from transformers import AutoModelForCausalLM

    # Stage 1 is the fine-tuned expert (MERA Tables 11-12): the very phase the experts and FT trained.
    stage_one = {
        name: json.loads((stage_folder(comparison, name, 1) / "stage.json").read_text())["checkpoint"]
        for name in ("PathWeave", "Experts", "FT")
    }
    assert len(set(stage_one.values())) == 1, stage_one
    expert = load_state(stage_folder(comparison, "PathWeave", 1))
    assert (
        AutoModelForCausalLM.from_pretrained(stage_folder(comparison, "PathWeave", 1)).config.llm_adapters
        is None
    )
    # Stage 2 adds the second modality's adapters on the frozen expert LLM.
    folder = stage_folder(comparison, "PathWeave", 2)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.llm_adapters["modalities"] == ORDER[1:]
    state = model.state_dict()
    assert any(".ana.uni.audio." in key for key in state)
    assert not any(".ana.uni.image." in key or ".ana.cross." in key for key in state)
    for key, value in expert.items():
        if is_llm_key(key) and "embed_tokens" not in key and "lm_head" not in key:
            assert torch.equal(state[key], value), key


def test_no_plugin_state_is_published_in_a_stage_folder(comparison):
    it = [p for p in checkpoints(comparison, "it") if (p / "plugin-ewc.safetensors").is_file()]
    assert len(it) == 2  # EWC's Fisher and anchor after each of its stages
    for folder in (comparison / "ewc").glob("stage-*"):
        assert not list(folder.glob("plugin-*")), folder


def test_killed_ewc_run_resumes_with_the_fisher_of_the_uninterrupted_run(data_root, tmp_path):
    methods = ["--methods", "[{name: EWC, type: ewc, plugins: [{name: ewc, lambda_: 1000.0}]}]"]
    reference = tmp_path / "reference"
    run_to_the_end(tiny_overrides(data_root, reference) + methods)
    # Killed as soon as stage 1's instruction tuning (the Fisher's phase) is complete.
    resumed = tmp_path / "resumed"
    kill_minus_9_once(
        tiny_overrides(data_root, resumed) + methods,
        lambda: bool(list(resumed.glob("checkpoints/it-image-*/phase.json"))),
    )
    assert not list(resumed.glob("checkpoints/it-audio-*/phase.json"))  # stage 2 never finished
    out = run_to_the_end(tiny_overrides(data_root, resumed) + methods)
    assert "phase it-image" in out and "reusing" in out

    (ref,) = checkpoints(reference, "it-audio")
    (res,) = checkpoints(resumed, "it-audio")
    a, b = load_state(ref), load_state(res)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Σ F over both stages, saved with stage 2's checkpoint.
    fisher = load_state_file(ref / "plugin-ewc.safetensors")
    assert int(fisher["num_stages"]) == 2 and any(
        torch.count_nonzero(v) for k, v in fisher.items() if k.startswith("fisher.")
    )


def load_state_file(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_merges_over_every_stage_run_at_each_stage_and_only_move_the_llm(comparison):
    # Stage 1 of TIES and LPM is the expert θ₁,vanilla (no merge phase, as MERA's); both merge from stage 2,
    # under the published protocol's description (#17).
    for method in ("TIES", "LPM"):
        first = json.loads((stage_folder(comparison, method, 1) / "stage.json").read_text())
        expert = json.loads((stage_folder(comparison, "Merge only", 1) / "stage.json").read_text())
        assert first["checkpoint"] == expert["checkpoint"]
        assert phase(comparison / "checkpoints" / first["checkpoint"])["description"]["phase"] != "merge"
        for index in (2,):
            info = json.loads((stage_folder(comparison, method, index) / "stage.json").read_text())
            folder = comparison / "checkpoints" / info["checkpoint"]
            description = phase(folder)["description"]
            assert description["merge"]["method"] == method.lower() and len(description["stages"]) == index
            assert description["protocol"] == "theta0-task-vectors"
            vanilla = load_state(comparison / "checkpoints" / phase(folder)["parent"])
            merged = load_state(folder)
            moved = {k for k in merged if not torch.equal(merged[k], vanilla[k])}
            assert moved and all(is_llm_key(k) for k in moved), (method, index, sorted(moved)[:3])
