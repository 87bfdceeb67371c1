"""Tests for hf_mera.merging: the registry of YAML merges, hand-computed merges, key checks, exact LoRA
folding, and MERA's entry point bitwise against a frozen copy of the arithmetic the pipeline has always used."""

import re
import subprocess
import sys

import pytest
import torch

from hf_mera.continual.curriculum import MethodConfig
from hf_mera.merging import (
    LLM_KEY_PATTERN,
    MERGES,
    StageMerge,
    build_merge,
    kernels,
    lora_delta_weights,
    mera_coefficient,
    mera_merge_state_dict,
    merge_help,
    peft_key_to_model_key,
    peft_state_dict_to_model_state_dict,
    register_merge,
)
from hf_mera.merging.task_vector import TaskVectorMerge

T = torch.tensor


# ---------------------------------------------------------------- registry


def test_registry_is_the_one_list_of_yaml_merges():
    assert set(MERGES.names()) == {
        "none", "mera", "task_arithmetic", "magnitude_prune", "ties", "dare_linear", "dare_ties", "lpm"
    }  # fmt: skip
    with pytest.raises(ValueError, match="'ties' is already registered"):
        register_merge("ties", type("Again", (StageMerge,), {}))
    with pytest.raises(ValueError, match=r"unknown merge 'slerpp'; known: .*'mera'.*'ties'"):
        build_merge("slerpp")
    # The config's help and errors come from the registry: every name, its help and its options.
    help_text = MethodConfig.__dataclass_fields__["merge"].metadata["help"]
    assert help_text == merge_help()
    for name, cls in MERGES.items():
        assert f"'{name}': {cls.help}" in help_text and cls.help
    assert "'ties': " in help_text and "[options: density, majority_sign_method, scale, weights]" in help_text
    assert "'task_arithmetic': θ₀ + λ Σₖ wₖ τₖ (Ilharco et al., 2023) [options: scale, weights]" in help_text
    with pytest.raises(ValueError, match=r"methods: 'M': merge: unknown merge 'tis'"):
        MethodConfig(name="M", type="mera", merge="tis")


def test_the_config_builds_the_merge_once():
    method = MethodConfig(name="M", type="mera", merge={"method": "ties", "density": 0.5})
    assert method.stage_merge("mera") is method.stage_merge("none")  # the YAML's, built when read
    assert method.stage_merge("mera").options()["density"] == 0.5
    assert MethodConfig(name="N", type="mera").stage_merge("none").name == "none"  # the class default


def test_importing_merging_does_not_import_peft():
    # peft costs ~10 s to import; the merging package (and hf_mera, which it imports) must not
    # pay it until a LoRA function is called.
    code = (
        "import sys, hf_mera.merging; "
        "assert 'peft' not in sys.modules, 'importing hf_mera.merging imported peft'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- pure tensor merges, by hand


def test_mera_formula_by_hand():
    # i = 3: 2/3 * [3, 6] + 1/3 * [0, 3] = [2, 5]
    prev, vanilla = {"w": T([3.0, 6.0])}, {"w": T([0.0, 3.0])}
    torch.testing.assert_close(mera_merge_state_dict(prev, vanilla, 3, include=None)["w"], T([2.0, 5.0]))
    # i = 1: the vanilla model itself, exactly
    assert torch.equal(mera_merge_state_dict(prev, vanilla, 1, include=None)["w"], vanilla["w"])
    # c = 0.25: [3, 6] + 0.25 * ([0, 3] - [3, 6]) = [2.25, 5.25]
    assert torch.equal(kernels.interpolate(prev["w"], vanilla["w"], 0.25, key="w"), T([2.25, 5.25]))
    assert [mera_coefficient(i) for i in range(1, 5)] == [1.0, 0.5, 1 / 3, 0.25]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="stage_index"):
            mera_merge_state_dict(prev, vanilla, bad, include=None)


def test_mera_running_average_is_mean_of_stage_models():
    # Each stage model is θ₀ + Δ_k with Δ_k measured from the same θ₀.
    theta0 = T([[1.0, 2.0], [3.0, 4.0]])
    deltas = [
        T([[12.0, 0.0], [0.0, 0.0]]),
        T([[0.0, 12.0], [0.0, 0.0]]),
        T([[0.0, 0.0], [12.0, 0.0]]),
        T([[0.0, 0.0], [0.0, 12.0]]),
    ]
    # θᵢ = θ₀ + mean(Δ₁ … Δᵢ), written out
    expected = [
        T([[13.0, 2.0], [3.0, 4.0]]),  # θ₀ + Δ₁
        T([[7.0, 8.0], [3.0, 4.0]]),  # θ₀ + (Δ₁ + Δ₂) / 2
        T([[5.0, 6.0], [7.0, 4.0]]),  # θ₀ + (Δ₁ + Δ₂ + Δ₃) / 3
        T([[4.0, 5.0], [6.0, 7.0]]),  # θ₀ + (Δ₁ + … + Δ₄) / 4
    ]
    theta_sd = {"w": theta0}
    for i, (delta, want) in enumerate(zip(deltas, expected), start=1):
        theta_sd = mera_merge_state_dict(theta_sd, {"w": theta0 + delta}, i, include=None)
        torch.testing.assert_close(theta_sd["w"], want)


def test_lora_style_folding_is_mean_of_stage_models():
    # Stage i trains ΔWᵢ on top of θᵢ₋₁: vanillaᵢ = θᵢ₋₁ + ΔWᵢ and θᵢ = θᵢ₋₁ + ΔWᵢ / i
    # equals the plain mean of vanilla₁ … vanillaᵢ.
    theta, vanillas = {"w": T([0.0, 0.0])}, []
    for i, delta in enumerate([T([6.0, 0.0]), T([0.0, 6.0]), T([6.0, 6.0]), T([-6.0, 12.0])], start=1):
        vanillas.append(theta["w"] + delta)
        theta = mera_merge_state_dict(theta, {"w": vanillas[-1]}, i, lora_deltas={"w": delta}, include=None)
        torch.testing.assert_close(theta["w"], torch.stack(vanillas).mean(0))
    # vanilla: [6, 0], [6, 6], [12, 9], [2, 17] → mean [6.5, 8]
    torch.testing.assert_close(theta["w"], T([6.5, 8.0]))


def _task_vector(name, base, others, weights=None, scale=1.0, **options):
    """θ_base + λ · combine(w_k · sparsify(θ_k − θ_base)): the family's merge of plain tensors."""
    return base + scale * MERGES[name].combine([o - base for o in others], weights, **options)


def task_arithmetic(*args, **kwargs):
    return _task_vector("task_arithmetic", *args, **kwargs)


def ties(*args, **kwargs):
    return _task_vector("ties", *args, **kwargs)


def magnitude_prune(*args, **kwargs):
    return _task_vector("magnitude_prune", *args, **kwargs)


def dare_linear(*args, **kwargs):
    return _task_vector("dare_linear", *args, **kwargs)


def dare_ties(*args, **kwargs):
    return _task_vector("dare_ties", *args, **kwargs)


def test_task_arithmetic_by_hand():
    # τ₁ = [1, -1, 0], τ₂ = [0, 2, 0]; [1, 1, 1] + 2 * (1 * τ₁ + 0.5 * τ₂) = [3, 1, 1]
    base = T([1.0, 1.0, 1.0])
    out = task_arithmetic(base, [T([2.0, 0.0, 1.0]), T([1.0, 3.0, 1.0])], weights=[1.0, 0.5], scale=2.0)
    assert torch.equal(out, T([3.0, 1.0, 1.0]))


def test_ties_sign_election_by_hand():
    base = T([1.0, 1.0, 1.0, 1.0])
    tau = [T([2.0, -1.0, 3.0, 0.5]), T([-1.0, -2.0, 0.5, 4.0]), T([-4.0, 3.0, -2.0, 0.25])]
    others = [base + t for t in tau]
    # density 0.75 keeps 3 of 4 entries by |τ|:
    #   τ₁ → [2, -1, 3, 0], τ₂ → [-1, -2, 0, 4], τ₃ → [-4, 3, -2, 0]
    # "total": Σ = [-3, 0, 1, 4] → signs [-, +, +, +] (0 goes to +)
    #   mean of agreeing entries: [(-1 - 4) / 2, 3, 3, 4] = [-2.5, 3, 3, 4]
    out = ties(base, others, density=0.75)
    assert torch.equal(out, base + T([-2.5, 3.0, 3.0, 4.0]))
    # "frequency": Σ sign = [-1, -1, 0, 1] → signs [-, -, +, +]; entry 1 becomes (-1 - 2) / 2
    out = ties(base, others, density=0.75, majority_sign_method="frequency")
    assert torch.equal(out, base + T([-2.5, -1.5, 3.0, 4.0]))
    with pytest.raises(ValueError, match="density"):
        ties(base, others, density=0.0)


def test_magnitude_prune_by_hand():
    # density 0.5: τ₁ = [3, -1, 2, 0.5] → [3, 0, 2, 0]; τ₂ = [0.1, -4, 0.2, 1] → [0, -4, 0, 1]
    base = torch.zeros(4)
    out = magnitude_prune(base, [T([3.0, -1.0, 2.0, 0.5]), T([0.1, -4.0, 0.2, 1.0])], density=0.5)
    assert torch.equal(out, T([3.0, -4.0, 2.0, 1.0]))


def test_dare_keeps_or_rescales_each_entry():
    # With one model, weight 1, density 0.5: each entry of τ is dropped (0) or doubled.
    torch.manual_seed(0)
    base, tau = torch.randn(64), torch.randn(64)
    out = dare_linear(base, [base + tau], density=0.5) - base
    kept = out != 0
    torch.testing.assert_close(out[kept], 2 * tau[kept])
    assert 0 < kept.sum() < 64


@pytest.mark.parametrize("name", ["ties", "dare_linear", "dare_ties", "magnitude_prune", "task_arithmetic"])
def test_task_vector_methods_match_peft(name):
    from peft.utils import merge_utils

    gen = torch.Generator().manual_seed(1)
    base = torch.randn(8, 6, generator=gen)
    others = [base + torch.randn(8, 6, generator=gen) for _ in range(3)]
    tau = [o - base for o in others]
    weights = T([0.5, 1.0, 2.0])
    kwargs = {} if name == "task_arithmetic" else {"density": 0.4}
    torch.manual_seed(123)  # DARE draws from the global generator
    ours = _task_vector(name, base, others, weights=weights, scale=0.7, **kwargs)
    torch.manual_seed(123)
    theirs = base + 0.7 * getattr(merge_utils, name)(tau, weights, **kwargs)
    assert torch.equal(ours, theirs)  # peft's own steps in peft's order: bit for bit
    # on task vectors given directly (LoRA's ΔW), `combine` is peft's function itself
    torch.manual_seed(5)
    ours = MERGES[name].combine(tau, weights, **kwargs)
    torch.manual_seed(5)
    assert torch.equal(ours, getattr(merge_utils, name)(tau, weights, **kwargs))


def test_task_vector_family_is_one_class_with_checked_arguments():
    family = ["task_arithmetic", "magnitude_prune", "ties", "dare_linear", "dare_ties"]
    assert all(issubclass(MERGES[name], TaskVectorMerge) for name in family)
    base, others = torch.zeros(4), [torch.ones(4)]
    with pytest.raises(ValueError, match="'task_arithmetic' keeps every entry; it takes no density"):
        task_arithmetic(base, others, density=0.5)
    with pytest.raises(ValueError, match="'dare_ties' needs a density"):
        dare_ties(base, others)
    with pytest.raises(ValueError, match="'dare_linear' elects no sign"):
        dare_linear(base, others, density=0.5, majority_sign_method="total")
    with pytest.raises(ValueError, match="at least one"):
        ties(base, [], density=0.5)
    with pytest.raises(ValueError, match=r"methods: 'M': merge: merge method 'ties' needs a density"):
        build_merge("ties", where="methods: 'M': merge")


# ---------------------------------------------------------------- state dicts


def _mcl_dicts():
    base = {
        "model.language_model.w": T([2.0, 4.0]),
        "model.connectors.image.w": T([1.0, 1.0]),
        "lm_head.weight": T([[0.0, 8.0]]),
        "model.language_model.steps": T([3]),
    }
    vanilla = {
        "model.language_model.w": T([4.0, 0.0]),
        "model.connectors.image.w": T([5.0, 5.0]),
        "model.connectors.audio.w": T([7.0]),  # new modality at this stage
        "lm_head.weight": T([[2.0, 4.0]]),
        "model.language_model.steps": T([9]),
    }
    return base, vanilla


def test_merge_state_dicts_merges_only_llm_keys():
    base, vanilla = _mcl_dicts()
    out = mera_merge_state_dict(base, vanilla, 2, include=LLM_KEY_PATTERN)
    assert torch.equal(out["model.language_model.w"], T([3.0, 2.0]))  # ([2, 4] + [4, 0]) / 2
    assert torch.equal(out["lm_head.weight"], T([[1.0, 6.0]]))
    assert torch.equal(out["model.connectors.image.w"], T([5.0, 5.0]))  # from the newest model
    assert torch.equal(out["model.connectors.audio.w"], T([7.0]))
    assert torch.equal(out["model.language_model.steps"], T([9]))  # integer buffer: copied
    assert set(out) == set(vanilla)
    # a callable selects the same keys
    same = mera_merge_state_dict(base, vanilla, 2, include=lambda k: "connectors" not in k)
    assert all(torch.equal(same[k], out[k]) for k in out)


def test_merge_state_dicts_preserves_dtype():
    # computed in float32: [256, 1] + 0.25 * ([260, 3] - [256, 1]) = [257, 1.5], then cast to bf16
    base = {"model.language_model.w": T([256.0, 1.0], dtype=torch.bfloat16)}
    vanilla = {"model.language_model.w": T([260.0, 3.0], dtype=torch.bfloat16)}
    out = mera_merge_state_dict(base, vanilla, 4)
    assert out["model.language_model.w"].dtype == torch.bfloat16
    assert torch.equal(out["model.language_model.w"], T([257.0, 1.5]).to(torch.bfloat16))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.pop("lm_head.weight"), "missing key 'lm_head.weight'"),
        (lambda d: d.pop("model.connectors.image.w"), "missing key 'model.connectors.image.w'"),
        (lambda d: d.update({"model.language_model.extra": T([1.0])}), "'model.language_model.extra'"),
        (
            lambda d: d.update({"lm_head.weight": T([[1.0, 2.0, 3.0]])}),
            "shape mismatch for key 'lm_head.weight'",
        ),
        (lambda d: d.update({"lm_head.weight": T([[float("nan"), 2.0]])}), "NaN.*'lm_head.weight'"),
    ],
)
def test_merge_state_dicts_rejects_bad_dicts(edit, match):
    base, vanilla = _mcl_dicts()
    edit(vanilla)
    with pytest.raises(ValueError, match=match):
        mera_merge_state_dict(base, vanilla, 2, include=LLM_KEY_PATTERN)


def test_merge_state_dicts_argument_errors():
    base, vanilla = _mcl_dicts()
    with pytest.raises(ValueError, match="selected no"):
        mera_merge_state_dict(base, vanilla, 2, include=r"^vision\.")
    # include=None: every key must match, so the new connector is an extra key
    with pytest.raises(ValueError, match="'model.connectors.audio.w'"):
        mera_merge_state_dict(base, vanilla, 2, include=None)


def test_mera_merge_state_dict_on_mcl_dicts():
    # Full: the LLM keys merged, everything else (connectors, the new modality, integer buffers) vanilla's.
    base, vanilla = _mcl_dicts()
    out = mera_merge_state_dict(base, vanilla, 2)
    assert torch.equal(out["model.language_model.w"], T([3.0, 2.0]))  # [2, 4] + ([4, 0] - [2, 4]) / 2
    assert torch.equal(out["lm_head.weight"], T([[1.0, 6.0]]))
    for key in ("model.connectors.image.w", "model.connectors.audio.w", "model.language_model.steps"):
        assert torch.equal(out[key], vanilla[key])
    assert set(out) == set(vanilla)
    # LoRA: only the ΔW keys change, θᵢ₋₁ + ΔW / 3; every other key is vanilla's, the LLM's too.
    deltas = {"lm_head.weight": T([[3.0, -6.0]])}
    out = mera_merge_state_dict(base, vanilla, 3, lora_deltas=deltas)
    assert torch.equal(out["lm_head.weight"], T([[1.0, 6.0]]))  # [0, 8] + [1, -2]
    assert all(torch.equal(out[k], vanilla[k]) for k in vanilla if k != "lm_head.weight")
    assert set(out) == set(vanilla)


# ---------------------------------------------------------------- LoRA


def test_peft_key_to_model_key():
    prefix = "base_model.model."
    assert peft_key_to_model_key(prefix + "model.layers.0.mlp.up_proj.base_layer.weight") == (
        "model.layers.0.mlp.up_proj.weight"
    )
    assert peft_key_to_model_key(prefix + "model.layers.0.mlp.up_proj.lora_A.default.weight") is None
    assert peft_key_to_model_key(prefix + "lm_head.modules_to_save.default.weight") == "lm_head.weight"
    assert peft_key_to_model_key(prefix + "lm_head.modules_to_save.other.weight") is None
    assert peft_key_to_model_key(prefix + "lm_head.original_module.weight") is None
    assert peft_key_to_model_key(prefix + "model.norm.weight") == "model.norm.weight"


TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=64,
    )
    return LlamaForCausalLM(config)


def _randomize_lora(peft_model):
    # lora_B (and lora_embedding_A) start at zero; give every factor a value.
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if ".lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)


def _peft_model(**lora_kwargs):
    from peft import LoraConfig, get_peft_model

    model = _tiny_llama()
    previous = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, **lora_kwargs))
    _randomize_lora(peft_model)
    return previous, peft_model


def _modules(peft_model):
    # (plain weight key, LoRA-wrapped Linear) for every targeted projection
    llama = peft_model.base_model.model
    for index, layer in enumerate(llama.model.layers):
        for block, targets in (("self_attn", TARGETS[:4]), ("mlp", TARGETS[4:])):
            for target in targets:
                yield f"model.layers.{index}.{block}.{target}.weight", getattr(getattr(layer, block), target)


def _assert_same_as_merge_and_unload(ours, peft_model):
    reference = peft_model.merge_and_unload().state_dict()
    assert set(ours) == set(reference)
    for key, tensor in reference.items():
        torch.testing.assert_close(ours[key], tensor, atol=1e-6, rtol=0, msg=key)


def _mera_lora(peft_model, previous, stage_index, **kwargs):
    # The pipeline's one LoRA path: ΔW from the PeftModel, then MERA's entry point. θᵢ,vanilla here is
    # the PeftModel's plain weights (base layers, modules_to_save copies); only the ΔW keys are merged.
    vanilla = peft_state_dict_to_model_state_dict(peft_model.state_dict())
    deltas = lora_delta_weights(peft_model)
    return mera_merge_state_dict(previous, vanilla, stage_index, lora_deltas=deltas, include=None, **kwargs)


def test_mera_lora_merge_is_base_plus_BA_over_i():
    previous, peft_model = _peft_model(target_modules="all-linear")
    merged = _mera_lora(peft_model, previous, stage_index=3)
    n = 0
    for key, module in _modules(peft_model):
        a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
        expected = previous[key] + (b @ a * (8 / 4)) / 3  # scaling = alpha / r = 2
        torch.testing.assert_close(merged[key], expected, atol=1e-6, rtol=0)
        n += 1
    assert n == 14
    for key in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(merged[key], previous[key])  # frozen and not LoRA-wrapped: bit for bit
    assert set(merged) == set(previous)
    assert all(torch.isfinite(t).all() for t in merged.values())


def test_lora_fold_at_stage_one_equals_merge_and_unload():
    # c(1) = 1: θ₀ + ΔW is peft's merge_and_unload.
    previous, peft_model = _peft_model(target_modules="all-linear")
    ours = mera_merge_state_dict(
        previous, previous, 1, lora_deltas=lora_delta_weights(peft_model), include=None
    )
    assert ours["model.norm.weight"] is previous["model.norm.weight"]  # not LoRA-wrapped: untouched
    _assert_same_as_merge_and_unload(ours, peft_model)


def test_rslora_and_embedding_lora():
    previous, peft_model = _peft_model(target_modules=[*TARGETS, "embed_tokens"], use_rslora=True)
    deltas = lora_delta_weights(peft_model)
    key, module = next(_modules(peft_model))
    a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
    torch.testing.assert_close(deltas[key], b @ a * (8 / 4**0.5))  # rslora: alpha / sqrt(r) = 4
    embed = peft_model.base_model.model.model.embed_tokens
    ea, eb = embed.lora_embedding_A["default"], embed.lora_embedding_B["default"]
    torch.testing.assert_close(deltas["model.embed_tokens.weight"], (eb @ ea).T * 4)
    merged = _mera_lora(peft_model, previous, stage_index=2)
    torch.testing.assert_close(merged[key], previous[key] + b @ a * 4 / 2, atol=1e-6, rtol=0)
    ours = mera_merge_state_dict(previous, previous, 1, lora_deltas=deltas, include=None)
    _assert_same_as_merge_and_unload(ours, peft_model)


def test_fan_in_fan_out_conv1d_matches_merge_and_unload():
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            n_embd=16, n_layer=1, n_head=2, vocab_size=32, n_positions=16, bos_token_id=0, eos_token_id=0
        )
    )
    previous = {k: v.clone() for k, v in model.state_dict().items()}
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True, lora_bias=True
    )
    peft_model = get_peft_model(model, config)
    _randomize_lora(peft_model)
    deltas = lora_delta_weights(peft_model)
    ours = mera_merge_state_dict(previous, previous, 1, lora_deltas=deltas, include=None)
    _assert_same_as_merge_and_unload(ours, peft_model)


def test_modules_to_save_copy_is_merged_as_full_weight():
    previous, peft_model = _peft_model(target_modules=["q_proj"], modules_to_save=["lm_head"])
    trained = peft_model.base_model.model.lm_head.modules_to_save["default"].weight
    with torch.no_grad():
        trained.add_(1.0)
    # ΔW = trained copy − frozen original = 1 (up to the rounding of (w + 1) − w)
    torch.testing.assert_close(lora_delta_weights(peft_model)["lm_head.weight"], torch.ones_like(trained))
    merged = _mera_lora(peft_model, previous, stage_index=4)
    torch.testing.assert_close(merged["lm_head.weight"], previous["lm_head.weight"] + 0.25)


def test_mera_lora_merge_rejects_deltas_outside_include():
    # MERA merges the LLM only: a ΔW on a key `include` leaves out (an encoder's LoRA) is an error.
    previous, peft_model = _peft_model(target_modules=["q_proj", "v_proj"])
    deltas = lora_delta_weights(peft_model)
    with pytest.raises(ValueError, match="'model.layers.0.self_attn.q_proj.weight' lies outside `include`"):
        mera_merge_state_dict(previous, previous, 2, lora_deltas=deltas, include=r"layers\.1\.")
    layer1 = {k: v for k, v in deltas.items() if "layers.1." in k}
    merged = mera_merge_state_dict(previous, previous, 2, lora_deltas=layer1, include=r"layers\.1\.")
    module = peft_model.base_model.model.model.layers[1].self_attn.v_proj
    a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
    key = "model.layers.1.self_attn.v_proj.weight"
    torch.testing.assert_close(merged[key], previous[key] + b @ a * 2 / 2, atol=1e-6, rtol=0)
    assert [k for k in merged if not torch.equal(merged[k], previous[k])] == list(layer1)


def test_dora_is_rejected():
    _, peft_model = _peft_model(target_modules=["q_proj"], use_dora=True)
    with pytest.raises(ValueError, match="DoRA"):
        lora_delta_weights(peft_model)


def test_mera_lora_merge_rejects_bad_state_dicts():
    previous, peft_model = _peft_model(target_modules=["q_proj", "v_proj"])
    deltas = lora_delta_weights(peft_model)
    key = "model.layers.0.self_attn.q_proj.weight"
    merge = mera_merge_state_dict
    with pytest.raises(ValueError, match=f"ΔW for key '{key}' has no weight in the previous"):
        merge({}, previous, 2, lora_deltas=deltas, include=None)
    with pytest.raises(ValueError, match=f"ΔW for key '{key}': the vanilla state dict lacks it"):
        merge(previous, {k: v for k, v in previous.items() if k != key}, 2, lora_deltas=deltas, include=None)
    bad = {**previous, key: torch.zeros(2, 2)}
    with pytest.raises(ValueError, match=f"shape mismatch for key '{key}'"):
        merge(bad, bad, 2, lora_deltas={key: deltas[key]}, include=None)
    nan = {**previous, key: torch.full_like(deltas[key], float("nan"))}
    with pytest.raises(ValueError, match="NaN"):
        merge(nan, nan, 2, lora_deltas={key: deltas[key]}, include=None)
    with pytest.raises(ValueError, match="lora_deltas is empty"):
        merge(previous, previous, 2, lora_deltas={}, include=None)
    plain = peft_state_dict_to_model_state_dict(peft_model.state_dict())
    assert set(plain) == set(previous)


# ---------------------------------------------------------------- bitwise against the pipeline's arithmetic


def _frozen_full_merge(previous, vanilla, i):
    # The arithmetic of the pipeline's full fine-tuning merge (`mera_merge_full` →
    # `merge_state_dicts(…, "interpolate")`, 2026-11), written out: per LLM float key, float32,
    # prev + c · (vanilla − prev) (vanilla itself at c = 1), cast back; everything else vanilla's.
    c = float(1.0 / i)
    merged = dict(vanilla)
    for key, prev in previous.items():
        if re.search(LLM_KEY_PATTERN, key) and prev.is_floating_point():
            b, v = prev.float(), vanilla[key].float()
            merged[key] = (v.clone() if c == 1 else b + c * (v - b)).to(prev.dtype)
    return merged


def _frozen_lora_merge(previous, vanilla, deltas, i):
    # The pipeline's LoRA merge (`fold_lora_into_state_dict` on the ΔW keys, 2026-11):
    # float32 prev + c · ΔW, cast back; everything else vanilla's.
    c = float(1.0 / i)
    merged = dict(vanilla)
    for key, delta in deltas.items():
        merged[key] = (previous[key].float() + c * delta.float()).to(previous[key].dtype)
    return merged


def _random_mcl_dicts(dtype, seed):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, std=0.02):
        return (torch.randn(*shape, generator=gen) * std).to(dtype)

    previous = {
        "model.language_model.layers.0.self_attn.q_proj.weight": rand(48, 32),
        "model.language_model.norm.weight": 1 + rand(32),
        "lm_head.weight": rand(40, 32),
        "model.connectors.image.0.weight": rand(32, 16),
        "model.encoders.image.proj.weight": rand(16, 8),
        "model.language_model.rotary_steps": torch.tensor([3]),
    }
    vanilla = {
        k: (v + rand(*v.shape, std=0.002)).to(dtype) if v.is_floating_point() else v + 1
        for k, v in previous.items()
    }
    vanilla["model.connectors.audio.0.weight"] = rand(32, 16)  # this stage's new modality
    lora_keys = ["model.language_model.layers.0.self_attn.q_proj.weight", "lm_head.weight"]
    deltas = {k: torch.randn(previous[k].shape, generator=gen) * 1e-3 for k in lora_keys}  # float32, as saved
    return previous, vanilla, deltas


def _assert_bitwise(ours, reference):
    assert list(ours) == list(reference)
    for key, tensor in reference.items():
        assert ours[key].dtype == tensor.dtype, key
        assert torch.equal(ours[key], tensor), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("stage_index", [1, 2, 3, 4])
def test_mera_merge_state_dict_is_bitwise_the_pipelines_arithmetic(dtype, stage_index):
    for seed in range(3):
        previous, vanilla, deltas = _random_mcl_dicts(dtype, seed)
        _assert_bitwise(
            mera_merge_state_dict(previous, vanilla, stage_index),
            _frozen_full_merge(previous, vanilla, stage_index),
        )
        _assert_bitwise(
            mera_merge_state_dict(previous, vanilla, stage_index, lora_deltas=deltas),
            _frozen_lora_merge(previous, vanilla, deltas, stage_index),
        )
    # The order matters: prev + c · ΔW differs from prev + ΔW / i somewhere in these tensors (so the
    # comparison above can tell the two apart).
    if stage_index == 3:
        a = previous["lm_head.weight"].float() + (1 / 3) * deltas["lm_head.weight"]
        b = previous["lm_head.weight"].float() + deltas["lm_head.weight"] / 3
        assert not torch.equal(a, b)
