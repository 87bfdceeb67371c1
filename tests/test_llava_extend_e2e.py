"""A tiny transformers LLaVA extended with audio and point clouds through the whole curriculum
(`model.backbone.type: llava`, the shipped llava-extend.yaml), with MERA and the experts (slow).

Checked on the run's real checkpoints: stage 1 (image) is the imported source, measured and not
trained, and it is the image expert; the new stages leave the vision tower and (until
realignment) the image connector as the source had them; realignment moves connectors only; MERA's
θ₁ is the imported LLM; every stage folder loads with the Auto classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY_SIZES, build_tiny_llava, checkpoints, load_state, phase

pytestmark = pytest.mark.slow

ORDER = ["image", "audio", "point_cloud"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from hf_mera.continual.curriculum import load_run_config, shipped_config
    from trainers.runner import run_curriculum

    source = build_tiny_llava(tmp_path_factory.mktemp("llava-source"), "llama")
    out = tmp_path_factory.mktemp("llava-extend")
    overrides = [
        "--output_dir", str(out),
        "--data.root", str(tmp_path_factory.mktemp("bench")),
        "--data.embedded", TINY_SIZES,
        "--model.backbone.name_or_path", str(source),
        "--model.backbone.dtype", "float32",
        "--model.modalities.audio.encoder_config", "{num_tokens: 4, hidden_size: 32}",
        "--model.modalities.point_cloud.encoder_config", "{num_tokens: 4, group_size: 8, hidden_size: 32, in_channels: 6}",
        "--model.modalities.point_cloud.preprocess", "{num_points: 64, use_color: true}",
        "--training.connector_pretrain.max_steps", "2",
        "--training.connector_pretrain.per_device_train_batch_size", "8",
        "--training.instruction_tuning.max_steps", "2",
        "--training.instruction_tuning.per_device_train_batch_size", "8",
        "--training.instruction_tuning.lora_r", "4",
        "--training.instruction_tuning.lora_alpha", "8",
        "--training.realign.num_train_epochs", "1",
        "--training.realign.per_device_train_batch_size", "8",
        "--evaluation.max_new_tokens", "3",
        "--evaluation.batch_size", "8",
        "--methods", "[{name: Experts, type: experts}, {name: MERA, type: mera, replay_ratio: 0.25}]",
    ]  # fmt: skip
    run_curriculum(load_run_config(shipped_config("llava-extend"), overrides), progress=False)
    return out, source


def source_state(source: Path) -> dict[str, torch.Tensor]:
    """The source's weights by module path (its file keeps transformers' legacy LLaVA key names)."""
    from transformers import LlavaForConditionalGeneration

    return LlavaForConditionalGeneration.from_pretrained(source).state_dict()


def stage_dir(out: Path, method: str, index: int) -> Path:
    return out / method.lower() / f"stage-{index}-{ORDER[index - 1]}"


def test_stage_one_is_the_source_measured_not_trained(run_dir):
    out, _ = run_dir
    assert not [p for m in ORDER[:1] for p in (out / "checkpoints").glob(f"*-{m}-*")]  # no phase of image
    (backbone,) = checkpoints(out, "backbone")
    info = json.loads((stage_dir(out, "MERA", 1) / "stage.json").read_text())
    assert info["checkpoint"] == backbone.name
    records = {r["name"]: r for r in json.loads((out / "results.json").read_text())["records"]}
    mera, experts = records["MERA"]["stages"], records["Experts"]["stages"]
    assert [s["modality"] for s in mera] == ORDER
    # The image expert of Relative Gain is the source itself: the same checkpoint, the same scores.
    image_expert = next(s for s in experts if s["modality"] == "image")
    assert image_expert["checkpoint"] == mera[0]["checkpoint"]
    assert image_expert["scores"]["image"] == mera[0]["scores"]["image"]


def test_new_stages_leave_the_vision_tower_and_train_around_the_image_connector(run_dir):
    out, source = run_dir
    src = source_state(source)
    tower = {k.replace("model.vision_tower.", "model.encoders.image.model."): v for k, v in src.items()
             if k.startswith("model.vision_tower.")}  # fmt: skip
    projector = {k.replace("model.multi_modal_projector.", "model.connectors.image."): v for k, v in src.items()
                 if k.startswith("model.multi_modal_projector.")}  # fmt: skip
    assert tower and projector
    phases = (
        "add-audio",
        "pretrain-audio",
        "it-audio",
        "add-point_cloud",
        "pretrain-point_cloud",
        "it-point_cloud",
    )
    for prefix in phases:
        found = checkpoints(out, prefix)
        assert found, prefix
        for path in found:  # point clouds: the expert's (from the source) and MERA's stage 3
            state = load_state(path)
            for key, value in tower.items():
                assert torch.equal(state[key], value), (path.name, key)
            if not realigned_before(out, path):
                for key, value in projector.items():  # no realignment yet: the source's, bitwise
                    assert torch.equal(state[key], value), (path.name, key)
    final = load_state(stage_dir(out, "MERA", 3))
    assert all(torch.equal(final[k], v) for k, v in tower.items())


def realigned_before(out: Path, path: Path) -> bool:
    """Whether a realignment phase is among `path`'s ancestors."""
    while True:
        parent = phase(path).get("parent")
        if not parent:
            return False
        path = out / "checkpoints" / parent
        if path.name.startswith("realign-"):
            return True


def test_realignment_moves_connectors_only(run_dir):
    out, _ = run_dir
    realigns = checkpoints(out, "realign")
    assert {phase(p)["description"]["modalities"][-1] for p in realigns} == {"audio", "point_cloud"}
    for path in realigns:
        before = load_state(out / "checkpoints" / phase(path)["parent"])
        after = load_state(path)
        moved = {k for k in after if not torch.equal(after[k], before[k])}
        assert moved, path.name
        assert all(k.startswith("model.connectors.") for k in moved), sorted(moved)[:5]
        assert any(k.startswith("model.connectors.image.") for k in moved)  # the image's too: M₁…Mᵢ


def test_meras_theta_one_is_the_imported_llm(run_dir):
    """θ₂ = θ₁ + (θ₂,vanilla − θ₁)/2 with θ₁ the source's LLM (stage 2 starts from it)."""
    out, source = run_dir
    src = source_state(source)
    (merge,) = [p for p in checkpoints(out, "merge-audio") if "schedule" in phase(p)["description"]]
    merged = load_state(merge)
    vanilla = load_state(out / "checkpoints" / phase(merge)["parent"])
    key = "model.language_model.layers.0.mlp.down_proj.weight"
    theta1 = src[key]
    assert not torch.equal(vanilla[key], theta1)  # stage 2 trained it
    torch.testing.assert_close(merged[key], theta1 + (vanilla[key] - theta1) / 2, rtol=0, atol=1e-6)


def test_every_stage_folder_loads_with_the_auto_classes(run_dir):
    from transformers import AutoModelForCausalLM, AutoProcessor

    import hf_mera  # noqa: F401  (registers the Auto classes)

    out, source = run_dir
    for index, modality in enumerate(ORDER, start=1):
        folder = stage_dir(out, "MERA", index)
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        processor = AutoProcessor.from_pretrained(folder)
        # (a saved config lists its modalities sorted by name: transformers writes JSON keys sorted)
        assert sorted(model.modality_names) == sorted(processor.modalities) == sorted(ORDER[:index])
        assert modality in model.config.modalities
        if index == 1:  # the imported source, saved by the run and reloaded: the source's logits
            from helpers import CONVERSATIONS, both_inputs, random_image
            from transformers import LlavaForConditionalGeneration

            llava = LlavaForConditionalGeneration.from_pretrained(source).eval()
            images = [random_image(7), random_image(8)]
            source_processor = AutoProcessor.from_pretrained(source)
            source_processor.tokenizer.padding_side = "left"  # as ours pads for generation
            src, ours, _, _ = both_inputs(source_processor, processor, images, CONVERSATIONS)
            with torch.no_grad():
                assert torch.equal(model(**ours).logits, llava(**src).logits)


@pytest.fixture(scope="module")
def every_method(tmp_path_factory):
    """Every method of the comparison from an imported LLaVA, on image (learned) → audio."""
    from hf_mera.continual.curriculum import load_run_config, shipped_config
    from trainers.runner import run_curriculum

    source = build_tiny_llava(tmp_path_factory.mktemp("llava-source-all"), "qwen2")
    out = tmp_path_factory.mktemp("llava-every-method")
    methods = (
        "[{name: Experts, type: experts}, {name: FT, type: fine_tuning}, {name: Replay, type: replay,"
        " replay_ratio: 0.25}, {name: EWC, type: ewc}, {name: EProj, type: eproj},"
        " {name: PathWeave, type: pathweave}, {name: MERA, type: mera},"
        " {name: TIES, type: mera, merge: {method: ties, density: 0.5}, realign: false}]"
    )
    overrides = [
        "--output_dir", str(out),
        "--order", "[image, audio]",
        "--data.root", str(tmp_path_factory.mktemp("bench-all")),
        "--data.embedded", TINY_SIZES,
        "--model.backbone.name_or_path", str(source),
        "--model.backbone.dtype", "float32",
        "--model.modalities.audio.encoder_config", "{num_tokens: 4, hidden_size: 32}",
        "--training.connector_pretrain.max_steps", "2",
        "--training.instruction_tuning.max_steps", "2",
        "--training.instruction_tuning.per_device_train_batch_size", "8",
        "--training.instruction_tuning.lora_r", "4",
        "--training.instruction_tuning.lora_alpha", "8",
        "--training.realign.per_device_train_batch_size", "8",
        "--evaluation.max_new_tokens", "3",
        "--evaluation.cross_modal", "false",
        "--methods", methods,
    ]  # fmt: skip
    run_curriculum(load_run_config(shipped_config("llava-extend"), overrides), progress=False)
    return out


def test_every_method_extends_the_imported_llava(every_method):
    out = every_method
    records = {r["name"]: r for r in json.loads((out / "results.json").read_text())["records"]}
    assert set(records) == {"Experts", "FT", "Replay", "EWC", "EProj", "PathWeave", "MERA", "TIES"}
    (backbone,) = checkpoints(out, "backbone")
    for name, record in records.items():
        if name == "Experts":
            continue
        assert [s["modality"] for s in record["stages"]] == ["image", "audio"], name
        first = Path(record["stages"][0]["checkpoint"]).name
        # Methods with plugins (Replay, EWC) end stage 1 in `learned-image` (their state); others keep
        # the backbone's checkpoint. Either way its weights are the source's.
        assert first == backbone.name or first.startswith("learned-image-"), (name, first)
    # EWC's Fisher and anchor were taken at the source on the image data.
    learned = [p for p in checkpoints(out, "learned-image") if (p / "plugin-ewc.safetensors").is_file()]
    assert len(learned) == 1
    from safetensors.torch import load_file

    state = load_file(str(learned[0] / "plugin-ewc.safetensors"))
    assert any(k.startswith("fisher.model.language_model.") for k in state)
    learned_state, backbone_state = load_state(learned[0]), load_state(backbone)
    assert learned_state.keys() == backbone_state.keys()
    assert all(torch.equal(learned_state[k], backbone_state[k]) for k in backbone_state)  # nothing trained
    # PathWeave's adapters are the new modality's only (the source's image path has none).
    config = json.loads((out / "pathweave" / "stage-2-audio" / "config.json").read_text())
    assert config["llm_adapters"]["modalities"] == ["audio"]
    # TIES took θ₀ = the imported LLM and τ₁ = 0: its stage-2 merge names the backbone as stage 1.
    (ties,) = [p for p in checkpoints(out, "merge-audio") if "merge" in phase(p)["description"]]
    assert phase(ties)["description"]["stages"][0] == [backbone.name.rsplit("-", 1)[-1]] * 2
