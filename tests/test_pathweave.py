"""PathWeave's Adapter-in-Adapter modules in the LLM (hf_mera.models.anymodality_llava.pathweave) and
the method that trains them stage by stage (trainers/methods/pathweave.py), on tiny random models."""

from __future__ import annotations

import re

import pytest
import torch
from helpers import build_model, dataset, feature_lookup, snapshot, test_args
from torch import nn

from hf_mera import AnyModalityLlava
from hf_mera.data.collator import MultimodalCollator
from hf_mera.models.anymodality_llava.pathweave import (
    AnA,
    add_pathweave_modality,
    ana_modules,
    stage_parameters,
)
from trainers import InstructionTuningConfig, InstructionTuningTrainer

RANK = 4
ATTENTION = re.compile(r"model\.language_model\.layers\.\d+\.self_attn\.[qkvo]_proj\.ana")


def logits(model, processor, text: str = "a red circle") -> torch.Tensor:
    ids = processor.tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(input_ids=ids).logits


def perturb_adapters(model, seed: int = 0) -> None:
    """Random values in every AnA parameter, as if trained (zero-initialised parts would hide bugs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for ana in ana_modules(model).values():
            for param in ana.parameters():
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))


# ---- placement --------------------------------------------------------------------------------------
def test_ana_modules_sit_in_the_llm_attention_projections_only(tiny_model):
    model, _ = tiny_model
    spec = add_pathweave_modality(model, "image", RANK)
    assert (
        model.config.llm_adapters
        == spec
        == {
            "type": "pathweave",
            "rank": RANK,
            "modalities": ["image"],
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        }
    )
    placed = ana_modules(model)
    layers = model.config.get_text_config().num_hidden_layers
    assert len(placed) == 4 * layers and all(ATTENTION.fullmatch(path) for path in placed)
    # Nothing in the MLP, lm_head, connectors or encoders; the base weights keep their names.
    names = [n for n, _ in model.named_parameters()]
    ana_params = [n for n in names if ".ana." in n]
    assert ana_params and all(n.startswith("model.language_model.layers.") for n in ana_params)
    assert not any(".mlp." in n for n in ana_params)
    assert "model.language_model.layers.0.self_attn.q_proj.weight" in names
    for module in [model.lm_head, *model.connectors.values(), *model.encoders.values()]:
        assert not any(isinstance(m, AnA) for m in module.modules())
    q_proj = model.model.language_model.layers[0].self_attn.q_proj
    assert type(q_proj) is nn.Linear  # the linear stays a linear; its AnA is a child + forward hook
    assert q_proj.ana.uni["image"].down.weight.shape == (RANK, q_proj.in_features)
    assert q_proj.ana.uni["image"].up.weight.shape == (q_proj.out_features, RANK)


def test_llm_adapters_config_is_checked(tiny_model):
    model, _ = tiny_model
    with pytest.raises(ValueError, match="llm_adapters.type"):
        model.set_llm_adapters({"type": "pathwave", "rank": 4, "modalities": ["image"]})
    with pytest.raises(ValueError, match="not modalities of this model"):
        model.set_llm_adapters({"type": "pathweave", "rank": 4, "modalities": ["smell"]})
    with pytest.raises(ValueError, match="unknown field"):
        model.set_llm_adapters({"type": "pathweave", "rank": 4, "modalities": ["image"], "alpha": 1})
    with pytest.raises(ValueError, match="match no linear"):
        model.set_llm_adapters(
            {"type": "pathweave", "rank": 4, "modalities": ["image"], "target_modules": ["c_attn"]}
        )
    assert model.config.llm_adapters is None and not ana_modules(model)
    add_pathweave_modality(model, "image", RANK)
    with pytest.raises(ValueError, match="only grow by appending"):
        model.set_llm_adapters({"type": "pathweave", "rank": RANK, "modalities": ["audio"]})
    with pytest.raises(ValueError, match="only grow by appending"):
        add_pathweave_modality(model, "audio", RANK + 1)


# ---- gating and initialisation ----------------------------------------------------------------------
def test_experts_gates_and_in_adapters_grow_per_modality(tiny_model):
    model, _ = tiny_model
    add_pathweave_modality(model, "image", RANK)
    ana = model.model.language_model.layers[0].self_attn.q_proj.ana
    assert ana.gate is None and ana.noise is None and not ana.cross  # stage 1: A₁ alone
    add_pathweave_modality(model, "audio", RANK)
    add_pathweave_modality(model, "video", RANK)
    assert ana.modalities == ["image", "audio", "video"]
    assert sorted(ana.cross) == ["audio", "image"]  # an in-adapter inside each former adapter
    assert all(f.weight.shape == (RANK, RANK) for f in ana.cross.values())
    d = ana.in_features
    assert ana.gate.shape == ana.noise.shape == (d, 3)
    assert torch.count_nonzero(ana.gate) == torch.count_nonzero(ana.noise) == 0  # a fresh gate per stage

    x = torch.randn(2, 5, d)
    ana.eval()
    gates = ana.gates(x)
    assert gates.shape == (2, 5, 3)
    torch.testing.assert_close(gates, torch.full_like(gates, 1 / 3))  # zero gate: uniform
    with torch.no_grad():
        ana.gate.normal_()
    gates = ana.gates(x)
    torch.testing.assert_close(gates.sum(-1), torch.ones(2, 5))
    assert torch.equal(gates, ana.gates(x))  # no noise in eval mode
    ana.train()
    noisy = ana.gates(x)
    torch.testing.assert_close(noisy.sum(-1), torch.ones(2, 5))
    assert (noisy > 0).all() and not torch.allclose(noisy, gates)


def test_forward_is_the_gated_sum_of_cross_and_uni_modal_adapters(tiny_model):
    model, _ = tiny_model
    for name in ("image", "audio", "video"):
        add_pathweave_modality(model, name, RANK)
    perturb_adapters(model)
    model.eval()
    linear = model.model.language_model.layers[1].self_attn.v_proj
    ana = linear.ana
    x = torch.randn(3, linear.in_features)
    with torch.no_grad():
        g = torch.softmax(x @ ana.gate, -1)
        experts = [
            ana.uni[m].up(ana.cross[m](ana.uni[m].down(x))) * ana.uni[m].scale for m in ("image", "audio")
        ]
        experts.append(ana.uni["video"].up(ana.uni["video"].down(x)) * ana.uni["video"].scale)
        expected = nn.functional.linear(x, linear.weight, linear.bias) + sum(
            g[:, j : j + 1] * e for j, e in enumerate(experts)
        )
        torch.testing.assert_close(linear(x), expected)


def test_initialisation_matches_pathweave(tiny_model):
    model, processor = tiny_model
    before = logits(model, processor)
    add_pathweave_modality(model, "image", RANK)
    # A new uni-modal adapter starts at zero (U = 0, LoRA-style), so stage 1 leaves the model unchanged.
    assert torch.equal(logits(model, processor), before)
    ana = model.model.language_model.layers[0].self_attn.k_proj.ana
    assert torch.count_nonzero(ana.uni["image"].up.weight) == 0 and ana.uni["image"].scale.item() == 1.0
    perturb_adapters(model)  # as if stage 1 had trained A₁
    trained = logits(model, processor)
    add_pathweave_modality(model, "audio", RANK)
    # Stage 2 changes the output, as in PathWeave: the zero gate weighs A₁ by 1/2 and a random in-adapter
    # sits inside it; the new A₂ itself adds nothing yet.
    assert torch.count_nonzero(ana.uni["audio"].up.weight) == 0
    assert torch.count_nonzero(ana.cross["image"].weight) > 0
    assert not torch.allclose(logits(model, processor), trained)


# ---- checkpoints ------------------------------------------------------------------------------------
def test_save_and_auto_load_rebuild_the_adapters_with_identical_outputs(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    model, processor = tiny_model
    add_pathweave_modality(model, "image", RANK)
    add_pathweave_modality(model, "audio", RANK)
    perturb_adapters(model)
    model.eval()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    for loader in (AutoModelForCausalLM, AnyModalityLlava):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert loaded.config.llm_adapters == model.config.llm_adapters
        state, loaded_state = model.state_dict(), loaded.state_dict()
        assert state.keys() == loaded_state.keys()
        assert all(torch.equal(state[k], loaded_state[k]) for k in state)
        assert torch.equal(logits(loaded, processor), logits(model, processor))
    ids = processor.tokenizer("describe the input .", return_tensors="pt").input_ids
    generated = [m.generate(input_ids=ids, max_new_tokens=4, do_sample=False) for m in (model, loaded)]
    assert torch.equal(*generated)


# ---- training ---------------------------------------------------------------------------------------
def train_stage(model, processor, modality, tmp_path):
    """Add `modality`'s adapters and train one stage; returns the trainer and the stage's starting
    parameters (the ones it trains, before training)."""
    add_pathweave_modality(model, modality, RANK)
    initial = {name: param.detach().clone() for name, param in stage_parameters(model).items()}
    trainer = InstructionTuningTrainer(
        model=model,
        modality=modality,
        args=test_args(InstructionTuningConfig, tmp_path, use_lora=False, max_steps=2),
        train_dataset=dataset(modality),
        processing_class=processor,
        data_collator=MultimodalCollator(processor, feature_lookup=feature_lookup),
        train_parameters=stage_parameters(model).values(),
    )
    trainer.train()
    return trainer, initial


def test_a_stage_trains_its_adapter_every_in_adapter_the_gate_and_its_connector_only(tmp_path):
    model, processor = build_model()
    train_stage(model, processor, "image", tmp_path / "1")
    before = snapshot(model)
    trainer, initial = train_stage(model, processor, "audio", tmp_path / "2")
    assert trainer.model is model
    after = dict(model.named_parameters())
    new = set(after) - set(before)  # audio's adapter, image's in-adapter, the new gate
    assert new == set(stage_parameters(model))
    assert all(re.search(r"\.ana\.(uni\.audio\.|cross\.image\.|gate$|noise$)", n) for n in new)
    changed = {n for n in before if not torch.equal(after[n].detach(), before[n])}
    assert changed == {n for n in before if n.startswith("model.connectors.audio.")}
    # Bitwise frozen: the LLM's own weights, image's uni-modal adapter, encoders, the other connector.
    assert any(".ana.uni.image." in n for n in before) and any(
        n.startswith("model.encoders.") for n in before
    )
    # Trained: every new parameter moved (the gate and scale included), except where no gradient can
    # reach yet: A₂'s down projection gets none while its up projection is still zero at the first step.
    moved = {n for n in new if not torch.equal(after[n].detach(), initial[n])}
    assert moved >= {n for n in new if ".uni.audio.up." in n or ".cross.image." in n or n.endswith(".gate")}
