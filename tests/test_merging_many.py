"""Tests for MAny's merges (hf_mera.merging.lpm, .cpm): LPM's recursion against a direct least-squares solve, MERA as its
identity-Gram case, the ridge, validation, `input_grams` against XᵀX by hand (and its hooks), CPM's
weights and mixing against hand computations."""

import math

import pytest
import torch
from torch import nn

from hf_mera.merging.cpm import PrototypeMixedConnector, cpm_mix, cpm_weights, pool, prototype
from hf_mera.merging.lpm import LPMState, input_grams, lpm_fold, lpm_merge_state_dict
from hf_mera.merging.mera import mera_merge_state_dict


def mera_running_average(previous, others, i):
    """MERA's 1/i step on one tensor, as the pipeline computes it: θ + (1/i) · (θ_new − θ)."""
    return previous + (1.0 / i) * (others[0] - previous)


T = torch.tensor
OUT, IN = 3, 5


def _stages(n: int, tokens: int = 12, seed: int = 0, dtype=torch.float64):
    """n stages of (X_k [tokens, IN], ΔW_k [OUT, IN]); tokens > IN, so each G_k = X_kᵀX_k is SPD."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(tokens, IN, generator=g, dtype=dtype) * (k + 1) for k in range(n)]
    deltas = [torch.randn(OUT, IN, generator=g, dtype=dtype) for _ in range(n)]
    return xs, deltas


def _direct(xs, deltas, eps=None):
    """argmin_ΔW Σ_k ||X_k ΔW_kᵀ − X_k ΔWᵀ||² + ε_k ||ΔW_k − ΔW||², by lstsq on the stacked rows."""
    eps = eps or [0.0] * len(xs)
    rows = [torch.cat([x, math.sqrt(e) * torch.eye(IN, dtype=x.dtype)]) for x, e in zip(xs, eps)]
    targets = [r @ d.T for r, d in zip(rows, deltas)]
    return torch.linalg.lstsq(torch.cat(rows), torch.cat(targets)).solution.T


def _run(xs, deltas, ridge, **kwargs):
    states, state = [], LPMState()
    for x, d in zip(xs, deltas):
        state = state.update(d, x.T @ x, ridge=ridge, **kwargs)
        states.append(state)
    return states


# ---------------------------------------------------------------- LPM: the recursion


def test_rls_recursion_equals_direct_least_squares_at_every_stage():
    xs, deltas = _stages(4)
    for n, state in enumerate(_run(xs, deltas, ridge=0.0), start=1):
        assert state.count == n
        torch.testing.assert_close(state.delta, _direct(xs[:n], deltas[:n]), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(state.gram, sum(x.T @ x for x in xs[:n]), rtol=1e-12, atol=1e-12)
    # and the closed form ΔW = (Σ ΔW_k G_k)(Σ G_k)⁻¹
    grams = [x.T @ x for x in xs]
    closed = sum(d @ g for d, g in zip(deltas, grams)) @ torch.linalg.inv(sum(grams))
    torch.testing.assert_close(state.delta, closed, rtol=1e-9, atol=1e-9)


def test_ridge_is_per_stage_toward_each_stage_delta():
    xs, deltas = _stages(3, seed=1)
    ridge = 0.05
    eps = [ridge * (x.T @ x).diagonal().mean().item() for x in xs]
    state = _run(xs, deltas, ridge=ridge)[-1]
    torch.testing.assert_close(state.delta, _direct(xs, deltas, eps), rtol=1e-10, atol=1e-10)
    # the ridge moved the merge away from the plain least squares one
    assert not torch.allclose(state.delta, _direct(xs, deltas), atol=1e-3)


def test_ridge_fills_unexcited_directions_with_the_weighted_mean():
    # Inputs span only the first 2 of 5 input dims: ridge 0 cannot solve; ridge > 0 gives, along the
    # unexcited dims, the ε_k-weighted mean of the stage deltas (equal traces here: the plain mean).
    g = torch.Generator().manual_seed(2)
    xs = []
    for _ in range(3):
        x = torch.zeros(8, IN, dtype=torch.float64)
        x[:, :2] = torch.randn(8, 2, generator=g, dtype=torch.float64)
        xs.append(x / (x.T @ x).trace().sqrt())  # tr G_k = 1 for every stage, so ε_k are equal
    _, deltas = _stages(3, seed=3)
    with pytest.raises(ValueError, match="'layer.weight'.*positive definite"):
        _run(xs, deltas, ridge=0.0, key="layer.weight")
    state = _run(xs, deltas, ridge=1e-3)[-1]
    torch.testing.assert_close(state.delta[:, 2:], sum(d[:, 2:] for d in deltas) / 3, rtol=1e-10, atol=1e-10)


def test_large_ridge_tends_to_the_trace_weighted_mean():
    xs, deltas = _stages(3, seed=4)
    traces = [(x.T @ x).trace() for x in xs]
    weighted = sum(t * d for t, d in zip(traces, deltas)) / sum(traces)
    state = _run(xs, deltas, ridge=1e8)[-1]
    torch.testing.assert_close(state.delta, weighted, rtol=1e-6, atol=1e-6)


def test_stage_one_is_the_stage_delta_exactly_and_states_are_not_mutated():
    xs, deltas = _stages(2, dtype=torch.float32)
    first = LPMState().update(deltas[0], xs[0].T @ xs[0])
    assert torch.equal(first.delta, deltas[0]) and first.delta is not deltas[0]
    snapshot = (first.delta.clone(), first.gram.clone())
    second = first.update(deltas[1], xs[1].T @ xs[1])
    assert first.count == 1 and second.count == 2
    assert torch.equal(first.delta, snapshot[0]) and torch.equal(first.gram, snapshot[1])


def test_low_precision_inputs_are_stored_in_float32():
    xs, deltas = _stages(2, dtype=torch.float32)
    state = LPMState()
    for x, d in zip(xs, deltas):
        state = state.update(d.bfloat16(), (x.T @ x).bfloat16())
    assert state.delta.dtype == torch.float32 and state.gram.dtype == torch.float32


# ---------------------------------------------------------------- LPM: MERA as the special case


@pytest.mark.parametrize("ridge", [0.0, 1e-3, 10.0])
def test_identity_grams_reproduce_mera_running_average(ridge):
    _, deltas = _stages(4, seed=5)
    eye = torch.eye(IN, dtype=torch.float64)
    state, mera = LPMState(), None
    for i, d in enumerate(deltas, start=1):
        state = state.update(d, eye, ridge=ridge)
        mera = d.clone() if mera is None else mera_running_average(mera, [d], i)
        torch.testing.assert_close(state.delta, mera, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(state.delta, sum(deltas) / 4, rtol=1e-13, atol=1e-13)


def test_identity_grams_on_merged_deltas_reproduce_mera_lora_fold():
    # MERA's LoRA pipeline: stage i trains δᵢ on top of θᵢ₋₁ and θᵢ = θᵢ₋₁ + δᵢ / i.
    g = torch.Generator().manual_seed(6)
    base = {"w": torch.randn(OUT, IN, generator=g), "frozen": torch.randn(2)}
    previous, states = dict(base), None
    for i in range(1, 5):
        lora = {"w": torch.randn(OUT, IN, generator=g)}
        vanilla = {**previous, "w": previous["w"] + lora["w"]}
        previous = mera_merge_state_dict(previous, vanilla, i, lora_deltas=lora, include=None)
        states = lpm_merge_state_dict(states, lora, {"w": torch.eye(IN)}, deltas_from="merged")
        folded = lpm_fold(base, states)
        torch.testing.assert_close(folded["w"], previous["w"], rtol=1e-6, atol=1e-6)
        assert folded["frozen"] is base["frozen"]


def test_keys_without_gram_use_mera_average_bit_for_bit():
    xs, deltas = _stages(3, seed=7, dtype=torch.float32)
    bias = [torch.randn(OUT) for _ in range(3)]
    states, mera = None, None
    for i in range(3):
        states = lpm_merge_state_dict(
            states, {"l.weight": deltas[i], "l.bias": bias[i]}, {"l.weight": xs[i].T @ xs[i]}, ridge=0.0
        )
        mera = bias[0].clone() if mera is None else mera_running_average(mera, [bias[i]], i + 1)
        assert torch.equal(states["l.bias"].delta, mera)
        assert states["l.bias"].gram is None and states["l.weight"].gram is not None
    torch.testing.assert_close(
        states["l.weight"].delta, _direct([x.double() for x in xs], [d.double() for d in deltas]).float()
    )


# ---------------------------------------------------------------- LPM: validation


def test_validation_errors_name_the_key():
    xs, deltas = _stages(2)
    gram = xs[0].T @ xs[0]
    one = lpm_merge_state_dict(None, {"a.weight": deltas[0]}, {"a.weight": gram})
    with pytest.raises(ValueError, match="'a.weight'.*shape"):
        lpm_merge_state_dict(one, {"a.weight": deltas[1][:, :4]}, {"a.weight": gram[:4, :4]})
    with pytest.raises(ValueError, match="Gram for key 'a.weight' has shape"):
        lpm_merge_state_dict(None, {"a.weight": deltas[0]}, {"a.weight": gram[:4, :4]})
    with pytest.raises(ValueError, match="'a.bias' must be 2-D"):
        lpm_merge_state_dict(None, {"a.bias": deltas[0][0]}, {"a.bias": gram})
    with pytest.raises(ValueError, match="Gram was given for key 'b.weight'"):
        lpm_merge_state_dict(None, {"a.weight": deltas[0]}, {"b.weight": gram})
    with pytest.raises(ValueError, match="'b.weight'"):
        lpm_merge_state_dict(one, {"a.weight": deltas[1], "b.weight": deltas[1]}, {})
    with pytest.raises(ValueError, match="'a.weight' was merged with a Gram"):
        lpm_merge_state_dict(one, {"a.weight": deltas[1]}, {})
    with pytest.raises(ValueError, match="'a.weight'.*NaN"):
        lpm_merge_state_dict(None, {"a.weight": deltas[0]}, {"a.weight": gram * float("nan")})
    with pytest.raises(ValueError, match="'a.weight'.*NaN"):
        lpm_merge_state_dict(None, {"a.weight": deltas[0] * float("inf")}, {})
    with pytest.raises(ValueError, match="'a.weight' is zero"):
        lpm_merge_state_dict(None, {"a.weight": deltas[0]}, {"a.weight": torch.zeros(IN, IN)})
    for ridge in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ridge"):
            lpm_merge_state_dict(None, {"a.weight": deltas[0]}, {"a.weight": gram}, ridge=ridge)
    with pytest.raises(ValueError, match="deltas_from"):
        LPMState().update(deltas[0], gram, deltas_from="previous")
    two = {"a.weight": one["a.weight"].update(deltas[1], gram), "c.weight": one["a.weight"]}
    with pytest.raises(ValueError, match="unequal stage counts.*'c.weight'"):
        lpm_merge_state_dict(two, {"a.weight": deltas[0], "c.weight": deltas[0]}, {})
    with pytest.raises(ValueError, match="'z'"):
        lpm_fold({"a.weight": torch.zeros(OUT, IN)}, {"z": one["a.weight"]})


# ---------------------------------------------------------------- input_grams


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(3, 4)
        self.block = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
        self.drop = nn.Dropout(0.5)

    def forward(self, x, attention_mask=None, fail=False):
        h = self.drop(self.embed(x))
        if fail:
            raise RuntimeError("forward failed")
        return self.block(h)


def _hooks(model):
    return sum(len(m._forward_pre_hooks) for m in model.modules())


def test_input_grams_equal_xtx_by_hand():
    model = _Tiny().train()
    g = torch.Generator().manual_seed(1)
    batches = [{"x": torch.randn(2, 3, 3, generator=g)}, {"x": torch.randn(1, 4, 3, generator=g)}]
    grams = input_grams(model, batches, ["embed.weight", "block.0.weight", "block.2.weight"])
    x = torch.cat([b["x"].reshape(-1, 3) for b in batches])
    with torch.no_grad():
        h = model.embed(x)  # eval: dropout off; input_grams ran in eval mode too
        r = torch.relu(model.block[0](h))
    torch.testing.assert_close(grams["embed.weight"], x.T @ x)
    torch.testing.assert_close(grams["block.0.weight"], h.T @ h)
    torch.testing.assert_close(grams["block.2.weight"], r.T @ r)
    assert model.training and _hooks(model) == 0  # mode restored, hooks gone
    normalized = input_grams(model, batches, ["embed.weight"], normalize=True, dtype=torch.float64)
    torch.testing.assert_close(normalized["embed.weight"], (x.T @ x).double() / 10)


def test_input_grams_skip_padded_tokens():
    model = _Tiny()
    x = torch.randn(2, 3, 3)
    mask = T([[1, 1, 0], [1, 0, 0]])
    grams = input_grams(model, [{"x": x, "attention_mask": mask}], ["embed.weight"])
    kept = torch.stack([x[0, 0], x[0, 1], x[1, 0]])
    torch.testing.assert_close(grams["embed.weight"], kept.T @ kept)


def test_input_grams_remove_hooks_when_forward_raises_and_check_names():
    model = _Tiny().train()
    with pytest.raises(RuntimeError, match="forward failed"):
        input_grams(model, [{"x": torch.randn(1, 2, 3), "fail": True}], ["embed.weight"])
    assert _hooks(model) == 0 and model.training
    with pytest.raises(ValueError, match="'embed.bias'"):
        input_grams(model, [{"x": torch.randn(1, 2, 3)}], ["embed.bias"])
    with pytest.raises(ValueError, match="empty"):
        input_grams(model, [], ["embed.weight"])
    with pytest.raises(ValueError, match="'block.0.weight' saw no token"):
        input_grams(model, [{"x": torch.randn(0, 3)}], ["block.0.weight"])
    assert _hooks(model) == 0


def test_input_grams_on_a_peft_model_use_plain_keys():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_Tiny(), LoraConfig(r=2, target_modules=["0"], lora_dropout=0.0))
    x = torch.randn(2, 2, 3)
    grams = input_grams(model, [{"x": x}], ["block.0.weight"])
    with torch.no_grad():
        h = model.base_model.model.embed(x).reshape(-1, 4)
    torch.testing.assert_close(grams["block.0.weight"], h.T @ h)
    assert _hooks(model) == 0


# ---------------------------------------------------------------- CPM


def test_prototype_and_pool_by_hand():
    # [3, 4] / 5 = [0.6, 0.8]; [0, 2] / 2 = [0, 1]; mean [0.3, 0.9]
    torch.testing.assert_close(prototype(T([[3.0, 4.0], [0.0, 2.0]])), T([0.3, 0.9]))
    # tokens [1, 0] and [3, 4] pool to [2, 2], normalised [1/√2, 1/√2]
    torch.testing.assert_close(prototype(T([[[1.0, 0.0], [3.0, 4.0]]])), T([1.0, 1.0]) / math.sqrt(2))
    torch.testing.assert_close(pool(T([[[1.0, 0.0], [3.0, 4.0]]])), T([[2.0, 2.0]]))
    # masked pool: only the first token counts
    torch.testing.assert_close(pool(T([[[1.0, 0.0], [3.0, 4.0]]]), T([[1, 0]])), T([[1.0, 0.0]]))


def test_cpm_weights_by_hand():
    # τ = 1/ln 2 makes exp(cos/τ) = 2^cos. Prototypes [1,0], [0,2], [-1,0]:
    # f = [3, 0]:  cos = (1, 0, -1)  → 2^cos = (2, 1, 1/2), sum 7/2 → (4/7, 2/7, 1/7)
    # f = [0, -5]: cos = (0, -1, 0)  → (1, 1/2, 1), sum 5/2       → (2/5, 1/5, 2/5)
    prototypes = T([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
    weights = cpm_weights(T([[3.0, 0.0], [0.0, -5.0]]), prototypes, temperature=1 / math.log(2))
    torch.testing.assert_close(weights, T([[4 / 7, 2 / 7, 1 / 7], [2 / 5, 1 / 5, 2 / 5]]))
    with pytest.raises(ValueError, match="temperature"):
        cpm_weights(T([[1.0, 0.0]]), prototypes, temperature=0)
    with pytest.raises(ValueError, match="prototypes"):
        cpm_weights(T([[1.0, 0.0, 0.0]]), prototypes)


def test_cpm_mix_by_hand():
    # outputs[k, b, t, h]: version 0 gives 1s, version 1 gives 10s; weights b0 (0.25, 0.75), b1 (1, 0)
    outputs = torch.stack([torch.ones(2, 1, 2), 10 * torch.ones(2, 1, 2)])
    mixed = cpm_mix(outputs, T([[0.25, 0.75], [1.0, 0.0]]))
    torch.testing.assert_close(mixed, T([[[7.75, 7.75]], [[1.0, 1.0]]]))
    with pytest.raises(ValueError, match="weights"):
        cpm_mix(outputs, T([[0.25, 0.75, 0.0], [1.0, 0.0, 0.0]]))


def test_prototype_mixed_connector_is_the_weighted_sum_of_versions():
    torch.manual_seed(3)
    connectors = [nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 5)) for _ in range(3)]
    prototypes = torch.randn(3, 4)
    module = PrototypeMixedConnector(connectors, prototypes, temperature=0.2)
    x = torch.randn(2, 7, 4)
    with torch.no_grad():
        out = module(x)
        expected = torch.zeros(2, 7, 5)
        for b in range(2):
            f = x[b].mean(dim=0)
            cos = torch.stack([torch.nn.functional.cosine_similarity(f, p, dim=0) for p in prototypes])
            w = torch.exp(cos / 0.2) / torch.exp(cos / 0.2).sum()
            for k in range(3):
                expected[b] += w[k] * connectors[k](x[b : b + 1])[0]
    torch.testing.assert_close(out, expected)
    assert "prototypes" in module.state_dict()
    with pytest.raises(ValueError, match="different output shapes"):
        PrototypeMixedConnector([nn.Linear(4, 5), nn.Linear(4, 6)], torch.randn(2, 4))(x)
    with pytest.raises(ValueError, match="K = 3"):
        PrototypeMixedConnector(connectors, torch.randn(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        PrototypeMixedConnector(connectors, prototypes, temperature=-1.0)
