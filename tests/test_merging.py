"""Tests for hf_mera.merging: hand-computed merges, state-dict checks, exact LoRA folding, schedules."""

import subprocess
import sys

import pytest
import torch

from hf_mera.merging import (
    LLM_KEY_PATTERN,
    MERGE_METHODS,
    MergeSchedule,
    dare_linear,
    dare_ties,
    fold_lora_into_state_dict,
    get_merge_method,
    get_merge_schedule,
    interpolate,
    lora_delta_weights,
    magnitude_prune,
    mera_merge_full,
    mera_merge_lora,
    mera_running_average,
    merge_state_dicts,
    peft_key_to_model_key,
    peft_state_dict_to_model_state_dict,
    register_merge_method,
    register_merge_schedule,
    task_arithmetic,
    ties,
    weight_average,
)

T = torch.tensor


# ---------------------------------------------------------------- registry


def test_registry_lists_builtins_and_rejects_duplicates():
    assert {"weight_average", "mera", "interpolate", "task_arithmetic", "ties", "dare_linear"} <= set(
        MERGE_METHODS
    )
    assert get_merge_method("ties") is ties
    with pytest.raises(ValueError, match="'ties' is already registered"):
        register_merge_method("ties")(lambda base, others: base)
    with pytest.raises(ValueError, match=r"unknown merge method 'slerpp'.*'mera'.*'ties'"):
        get_merge_method("slerpp")


def test_importing_merging_does_not_import_peft():
    # peft costs ~10 s to import; the merging package (and hf_mera, which it imports) must not
    # pay it until a LoRA function is called.
    code = (
        "import sys, hf_mera.merging; "
        "assert 'peft' not in sys.modules, 'importing hf_mera.merging imported peft'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- pure tensor merges, by hand


def test_weight_average_by_hand():
    # 0.25 * [1, 2] + 0.75 * [3, 6] = [2.5, 5.0]
    assert torch.equal(weight_average(T([1.0, 2.0]), [T([3.0, 6.0])], [0.25, 0.75]), T([2.5, 5.0]))
    # default: plain mean of [0, 0], [2, 4], [4, 8]
    assert torch.equal(weight_average(T([0.0, 0.0]), [T([2.0, 4.0]), T([4.0, 8.0])]), T([2.0, 4.0]))
    with pytest.raises(ValueError, match="expects 2 weights"):
        weight_average(T([1.0]), [T([2.0])], [1.0])


def test_mera_formula_by_hand():
    # i = 3: 2/3 * [3, 6] + 1/3 * [0, 3] = [2, 5]
    prev, vanilla = T([3.0, 6.0]), T([0.0, 3.0])
    torch.testing.assert_close(mera_running_average(prev, [vanilla], stage_index=3), T([2.0, 5.0]))
    torch.testing.assert_close(weight_average(prev, [vanilla], [2 / 3, 1 / 3]), T([2.0, 5.0]))
    # i = 1: the vanilla model itself, exactly
    assert torch.equal(mera_running_average(prev, [vanilla], stage_index=1), vanilla)
    # c = 0.25: [3, 6] + 0.25 * ([0, 3] - [3, 6]) = [2.25, 5.25]
    assert torch.equal(interpolate(prev, [vanilla], coefficient=0.25), T([2.25, 5.25]))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="stage_index"):
            mera_running_average(prev, [vanilla], stage_index=bad)
    with pytest.raises(ValueError, match="exactly 1"):
        mera_running_average(prev, [vanilla, vanilla], stage_index=2)


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
    theta = theta0
    for i, (delta, want) in enumerate(zip(deltas, expected), start=1):
        vanilla = theta0 + delta
        theta = mera_running_average(theta, [vanilla], stage_index=i)
        torch.testing.assert_close(theta, want)
    # the same through state dicts
    theta_sd = {"w": theta0}
    for i, delta in enumerate(deltas, start=1):
        theta_sd = mera_merge_full(theta_sd, {"w": theta0 + delta}, stage_index=i)
    torch.testing.assert_close(theta_sd["w"], expected[-1])


def test_lora_style_folding_is_mean_of_stage_models():
    # Stage i trains ΔWᵢ on top of θᵢ₋₁: vanillaᵢ = θᵢ₋₁ + ΔWᵢ and θᵢ = θᵢ₋₁ + ΔWᵢ / i
    # equals the plain mean of vanilla₁ … vanillaᵢ.
    theta, vanillas = {"w": T([0.0, 0.0])}, []
    for i, delta in enumerate([T([6.0, 0.0]), T([0.0, 6.0]), T([6.0, 6.0]), T([-6.0, 12.0])], start=1):
        vanillas.append(theta["w"] + delta)
        theta = fold_lora_into_state_dict(theta, {"w": delta}, coefficient=1 / i)
        torch.testing.assert_close(theta["w"], torch.stack(vanillas).mean(0))
    # vanilla: [6, 0], [6, 6], [12, 9], [2, 17] → mean [6.5, 8]
    torch.testing.assert_close(theta["w"], T([6.5, 8.0]))


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
    ours = get_merge_method(name)(base, others, weights=weights, scale=0.7, **kwargs)
    torch.manual_seed(123)
    theirs = base + 0.7 * getattr(merge_utils, name)(tau, weights, **kwargs)
    torch.testing.assert_close(ours, theirs)
    assert {dare_linear, dare_ties} <= set(MERGE_METHODS.values())


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
    out = merge_state_dicts(base, [vanilla], "mera", include=LLM_KEY_PATTERN, stage_index=2)
    assert torch.equal(out["model.language_model.w"], T([3.0, 2.0]))  # ([2, 4] + [4, 0]) / 2
    assert torch.equal(out["lm_head.weight"], T([[1.0, 6.0]]))
    assert torch.equal(out["model.connectors.image.w"], T([5.0, 5.0]))  # from the newest model
    assert torch.equal(out["model.connectors.audio.w"], T([7.0]))
    assert torch.equal(out["model.language_model.steps"], T([9]))  # integer buffer: copied
    assert set(out) == set(vanilla)
    # a callable selects the same keys
    same = merge_state_dicts(base, [vanilla], "mera", include=lambda k: "connectors" not in k, stage_index=2)
    assert all(torch.equal(same[k], out[k]) for k in out)


def test_merge_state_dicts_preserves_dtype():
    # computed in float32: 0.75 * [256, 1] + 0.25 * [260, 3] = [257, 1.5], then cast to bf16
    base = {"model.language_model.w": T([256.0, 1.0], dtype=torch.bfloat16)}
    vanilla = {"model.language_model.w": T([260.0, 3.0], dtype=torch.bfloat16)}
    out = merge_state_dicts(base, [vanilla], "weight_average", weights=[0.75, 0.25])
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
        merge_state_dicts(base, [vanilla], "mera", include=LLM_KEY_PATTERN, stage_index=2)


def test_merge_state_dicts_argument_errors():
    base, vanilla = _mcl_dicts()
    with pytest.raises(ValueError, match="unknown merge method 'average'.*'weight_average'"):
        merge_state_dicts(base, [vanilla], "average")
    with pytest.raises(ValueError, match="selected no"):
        merge_state_dicts(base, [vanilla], "mera", include=r"^vision\.", stage_index=2)
    with pytest.raises(ValueError, match="at least one"):
        merge_state_dicts(base, [], "mera", stage_index=2)
    # include=None: every key must match, so the new connector is an extra key
    with pytest.raises(ValueError, match="'model.connectors.audio.w'"):
        merge_state_dicts(base, [vanilla], "mera", stage_index=2)


def test_mera_merge_full_with_schedule():
    prev, vanilla = {"w": T([0.0, 4.0])}, {"w": T([8.0, 0.0])}
    assert torch.equal(mera_merge_full(prev, vanilla, 4)["w"], T([2.0, 3.0]))  # prev + (v - prev) / 4
    out = mera_merge_full(prev, vanilla, 4, schedule=MergeSchedule("constant", alpha=0.5))
    assert torch.equal(out["w"], T([4.0, 2.0]))
    assert torch.equal(mera_merge_full(prev, vanilla, 4, schedule=MergeSchedule("none"))["w"], vanilla["w"])


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


def test_mera_merge_lora_is_base_plus_BA_over_i():
    previous, peft_model = _peft_model(target_modules="all-linear")
    merged = mera_merge_lora(peft_model, previous, stage_index=3)
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


def test_lora_fold_with_coefficient_one_equals_merge_and_unload():
    previous, peft_model = _peft_model(target_modules="all-linear")
    ours = fold_lora_into_state_dict(previous, lora_delta_weights(peft_model), coefficient=1.0)
    assert torch.equal(
        mera_merge_lora(peft_model, previous, 1)["model.norm.weight"], previous["model.norm.weight"]
    )
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
    merged = mera_merge_lora(peft_model, previous, stage_index=2)
    torch.testing.assert_close(merged[key], previous[key] + b @ a * 4 / 2, atol=1e-6, rtol=0)
    ours = fold_lora_into_state_dict(previous, deltas, coefficient=1.0)
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
    ours = fold_lora_into_state_dict(previous, lora_delta_weights(peft_model), coefficient=1.0)
    _assert_same_as_merge_and_unload(ours, peft_model)


def test_modules_to_save_copy_is_merged_as_full_weight():
    previous, peft_model = _peft_model(target_modules=["q_proj"], modules_to_save=["lm_head"])
    trained = peft_model.base_model.model.lm_head.modules_to_save["default"].weight
    with torch.no_grad():
        trained.add_(1.0)
    merged = mera_merge_lora(peft_model, previous, stage_index=4)
    torch.testing.assert_close(merged["lm_head.weight"], previous["lm_head.weight"] + 0.25)


def test_mera_merge_lora_merges_only_the_given_keys():
    # LoRA layers outside previous_llm_state (an encoder's, a connector's) are left out.
    previous, peft_model = _peft_model(target_modules=["q_proj", "v_proj"])
    key = "model.layers.1.self_attn.v_proj.weight"
    merged = mera_merge_lora(peft_model, {key: previous[key]}, stage_index=2)
    module = peft_model.base_model.model.model.layers[1].self_attn.v_proj
    a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
    assert set(merged) == {key}
    torch.testing.assert_close(merged[key], previous[key] + b @ a * 2 / 2, atol=1e-6, rtol=0)


def test_dora_is_rejected():
    _, peft_model = _peft_model(target_modules=["q_proj"], use_dora=True)
    with pytest.raises(ValueError, match="DoRA"):
        lora_delta_weights(peft_model)


def test_mera_merge_lora_rejects_bad_previous_state():
    previous, peft_model = _peft_model(target_modules=["q_proj", "v_proj"])
    with pytest.raises(ValueError, match="'model.layers.0.extra.weight'"):
        mera_merge_lora(peft_model, {**previous, "model.layers.0.extra.weight": torch.zeros(2)}, 2)
    bad = {**previous, "model.norm.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match="shape mismatch for key 'model.norm.weight'"):
        mera_merge_lora(peft_model, bad, 2)
    wrong_prefix = {"base_model.model." + k: v for k, v in previous.items()}
    with pytest.raises(ValueError, match="not a weight of the peft model"):
        mera_merge_lora(peft_model, wrong_prefix, 2)
    deltas = lora_delta_weights(peft_model)
    with pytest.raises(ValueError, match="no weight in the base state dict"):
        fold_lora_into_state_dict({}, deltas, 0.5)
    key = "model.layers.0.self_attn.q_proj.weight"
    with pytest.raises(ValueError, match=f"shape mismatch for key '{key}'"):
        fold_lora_into_state_dict({key: torch.zeros(2, 2)}, {key: deltas[key]}, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        fold_lora_into_state_dict({key: torch.full_like(deltas[key], float("nan"))}, {key: deltas[key]}, 0.5)
    plain = peft_state_dict_to_model_state_dict(peft_model.state_dict())
    assert set(plain) == set(previous)


# ---------------------------------------------------------------- schedules


def test_merge_schedules():
    mera = MergeSchedule()
    assert [mera(i) for i in range(1, 5)] == [1.0, 0.5, 1 / 3, 0.25]
    assert MergeSchedule("constant", alpha=0.3)(7) == 0.3
    assert MergeSchedule("none")(5) == 1.0
    schedule = MergeSchedule.from_dict({"name": "constant", "alpha": 0.5})
    assert schedule.to_dict() == {"name": "constant", "alpha": 0.5}
    assert schedule == MergeSchedule("constant", alpha=0.5)
    with pytest.raises(ValueError, match=r"unknown merge schedule 'ema'.*'constant'.*'mera'.*'none'"):
        MergeSchedule("ema")
    with pytest.raises(ValueError, match="bad arguments"):
        MergeSchedule("constant")
    with pytest.raises(ValueError, match="alpha must be in"):
        MergeSchedule("constant", alpha=1.5)
    with pytest.raises(ValueError, match="stage_index"):
        mera(0)
    with pytest.raises(ValueError, match="already registered"):
        register_merge_schedule("mera")(lambda stage_index: 1.0)
    assert get_merge_schedule("none")(3) == 1.0
