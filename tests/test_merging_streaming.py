"""The streaming merge (from and to safetensors files, tensor by tensor) against the in-memory merge,
bitwise, on a tiny AnyModalityLlava with tied embeddings saved by `save_pretrained`; and the fused
kernels against the whole-tensor reference arithmetic."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from hf_mera import AnyModalityLlava
from hf_mera.merging import build_merge, kernels
from hf_mera.merging.streaming import SafetensorsStateDict, write_merged
from tests.conftest import make_tiny_model
from trainers.checkpoints import Checkpoint
from trainers.merge import LORA_DELTAS_FILE, CheckpointHistory, StageUpdate


class InMemoryHistory:
    """The same stages as loaded models: θᵢ,vanilla is a model's state dict (tied keys share storage)."""

    def __init__(self, starts, vanillas, lora=None, seed=11):
        self.starts, self.vanillas, self.lora, self.index = starts, vanillas, lora, len(vanillas)
        self.seed = seed  # the run's (DARE's masks)

    def start(self, k):
        return self.starts[k - 1]

    def vanilla(self, k):
        return self.vanillas[k - 1]

    def lora_deltas(self, k):
        return None if self.lora is None else self.lora[k - 1]

    def grams(self, k, weight_names, samples, normalize):
        return _grams(k, weight_names, self.start(1))


def _grams(k, names, start):
    g = torch.Generator().manual_seed(k)
    out = {}
    for name in names:
        x = torch.randn(16, start[name].shape[1], generator=g)
        out[name] = x.T @ x / 16
    return out


class FileHistory(CheckpointHistory):
    def grams(self, k, weight_names, samples, normalize):
        return _grams(k, weight_names, self.start(1))


def _stages(tmp_path, tiny_tokenizer, n=3, lora=False):
    """n stages saved as checkpoints: stage k starts from the last vanilla plus noise (a stand-in for
    the previous merge) and trains τₖ (noise; with `lora`, τₖ also stored as ΔW on two weights)."""
    model, _ = make_tiny_model(tiny_tokenizer, modalities=("image", "audio"))
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight  # tied
    g = torch.Generator().manual_seed(0)
    updates = []
    for k in range(1, n + 1):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 1e-2)
        start = tmp_path / f"start-{k}"
        model.save_pretrained(start)
        deltas = {}
        with torch.no_grad():
            for name, p in model.named_parameters():
                tau = torch.randn(p.shape, generator=g) * 1e-2
                p.add_(tau)
                if lora and "language_model" in name and name.endswith(("q_proj.weight", "v_proj.weight")):
                    deltas[name] = tau.clone()
        vanilla = tmp_path / f"vanilla-{k}"
        model.save_pretrained(vanilla)
        if lora:
            save_file(deltas, str(vanilla / LORA_DELTAS_FILE))
        updates.append(StageUpdate("image", Checkpoint(f"s{k}", start, {}), Checkpoint(f"v{k}", vanilla, {})))
    return updates


def _in_memory(updates, lora):
    load = lambda path: AnyModalityLlava.from_pretrained(path)  # noqa: E731
    starts = [load(u.start.path).state_dict() for u in updates]
    vanilla_model = load(updates[-1].vanilla.path)
    vanillas = [load(u.vanilla.path).state_dict() for u in updates[:-1]] + [vanilla_model.state_dict()]
    deltas = [load_file(str(u.vanilla.path / LORA_DELTAS_FILE)) for u in updates] if lora else None
    return InMemoryHistory(starts, vanillas, deltas), vanilla_model


@pytest.mark.parametrize(
    "spec, lora",
    [
        ("mera", False),
        ("mera", True),
        ({"method": "task_arithmetic", "weights": "mean"}, False),
        ({"method": "ties", "density": 0.5}, True),
        ({"method": "dare_ties", "density": 0.5}, False),
        ({"method": "lpm"}, False),
    ],
)
def test_streaming_merge_equals_in_memory_merge_bitwise(tmp_path, tiny_tokenizer, spec, lora):
    updates = _stages(tmp_path, tiny_tokenizer, lora=lora)
    merge = build_merge(spec)
    # In memory, as the stage loop used to: the merge's state dict loaded into θᵢ,vanilla's model.
    history, model = _in_memory(updates, lora)
    model.load_state_dict(merge(history))
    model.save_pretrained(tmp_path / "in-memory")
    # Streamed: from the files to a file, one tensor at a time (DARE's masks: the same run seed).
    streamed = FileHistory(method=None, updates=updates, seed=11)
    assert isinstance(streamed.vanilla(3), SafetensorsStateDict)
    torch.manual_seed(5)  # the global generator plays no part
    write_merged(merge.tensors(streamed), streamed.vanilla(3), tmp_path / "streamed")
    # The same file, byte for byte (same header, same offsets, same values) ...
    a = (tmp_path / "in-memory" / "model.safetensors").read_bytes()
    b = (tmp_path / "streamed" / "model.safetensors").read_bytes()
    assert a == b
    # ... and the merge did change the LLM (the comparison is not between two copies of θᵢ,vanilla).
    vanilla = load_file(str(updates[-1].vanilla.path / "model.safetensors"))
    merged = load_file(str(tmp_path / "streamed" / "model.safetensors"))
    key = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged[key], vanilla[key])
    assert torch.equal(
        merged["model.connectors.image.linear_1.weight"], vanilla["model.connectors.image.linear_1.weight"]
    )


EMBED, LM_HEAD = "model.language_model.embed_tokens.weight", "lm_head.weight"


@pytest.mark.parametrize(
    "spec",
    [{"method": "lpm"}, {"method": "dare_ties", "density": 0.5}, {"method": "dare_linear", "density": 0.3}],
)
def test_tied_weights_are_merged_once(tmp_path, tiny_tokenizer, spec):
    """embed_tokens and lm_head are one parameter: after the merge both keys hold the same tensor, in
    memory and streamed (LPM: the embedding's 1/i rule, `lpm.py`; DARE: one mask for the group)."""
    updates = _stages(tmp_path, tiny_tokenizer)
    merge = build_merge(spec)
    history, _ = _in_memory(updates, lora=False)
    merged = merge(history)
    assert torch.equal(merged[EMBED], merged[LM_HEAD])
    streamed = dict(merge.tensors(FileHistory(method=None, updates=updates, seed=11)))
    assert torch.equal(streamed[EMBED], streamed[LM_HEAD]) and torch.equal(streamed[EMBED], merged[EMBED])
    vanilla = load_file(str(updates[-1].vanilla.path / "model.safetensors"))
    stored = EMBED if EMBED in vanilla else LM_HEAD
    assert not torch.equal(merged[EMBED], vanilla[stored])  # merged, not θᵢ,vanilla's
    if spec["method"] == "lpm":  # the embedding's rule: MERA's mean of the stage models on θ₀'s rows
        rows = history.start(1)[EMBED].shape[0]
        mean = torch.stack([history.vanilla(k)[EMBED][:rows] for k in (1, 2, 3)]).mean(0)
        torch.testing.assert_close(merged[EMBED][:rows], mean, rtol=0, atol=1e-6)


def test_write_merged_refuses_a_wrong_tensor_and_a_missing_key(tmp_path, tiny_tokenizer):
    updates = _stages(tmp_path, tiny_tokenizer, n=1)
    layout = SafetensorsStateDict(updates[0].vanilla.path)
    items = list(layout.items())
    key, tensor = items[0]
    with pytest.raises(ValueError, match=f"merged key '{key}'"):
        write_merged([(key, tensor.double())], layout, tmp_path / "bad")
    with pytest.raises(ValueError, match="wrote no tensor for stored keys"):
        write_merged(items[1:], layout, tmp_path / "missing")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n", [0, 1, 1000, kernels.BLOCK + 17])
def test_fused_kernels_equal_the_reference_bitwise(dtype, n):
    g = torch.Generator().manual_seed(n)
    p = (torch.randn(n, generator=g) * 0.02).to(dtype)
    v = (p.float() + torch.randn(n, generator=g) * 2e-3).to(dtype)
    d = torch.randn(n, generator=g) * 1e-3
    bits = lambda t: t.view(torch.uint8) if t.numel() else t  # noqa: E731
    for c in (1.0, 0.5, 1 / 3, 0.25, 1 / 7):
        ref = kernels.interpolate_reference(p, v, c)
        assert torch.equal(bits(kernels.interpolate(p, v, c, key="k")), bits(ref))
        own = v.clone()  # in place, into θᵢ,vanilla's own storage
        out = kernels.interpolate(p, own, c, key="k", out=own)
        assert torch.equal(bits(out), bits(ref)) and (n == 0 or out.data_ptr() == own.data_ptr())
        ref = kernels.add_scaled_reference(p, d, c)
        assert torch.equal(bits(kernels.add_scaled(p, d, c, key="k", out=v.clone())), bits(ref))
    # The reference differs from the fused-multiply-add form (lerp) somewhere: the check has teeth.
    if dtype == torch.float32 and n > 1000:
        assert not torch.equal(kernels.interpolate_reference(p, v, 1 / 3), torch.lerp(p, v, 1 / 3))


def test_fused_kernels_find_nan_in_any_block_and_never_write_over_an_input_they_read():
    p = torch.zeros(3 * kernels.BLOCK)
    v = torch.ones_like(p)
    v[2 * kernels.BLOCK + 5] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf for key 'w'"):
        kernels.interpolate(p, v, 0.5, key="w")
    # finite values whose block sum overflows are not an error
    big = torch.full((kernels.BLOCK,), 3e38)
    assert torch.equal(kernels.interpolate(big, big.clone(), 0.5, key="w"), big)
    # out = prev's storage would be read after written: a new tensor is used instead
    p = torch.arange(4.0)
    out = kernels.interpolate(p, p + 2, 0.5, key="w", out=p)
    assert torch.equal(out, torch.arange(4.0) + 1) and torch.equal(p, torch.arange(4.0))
