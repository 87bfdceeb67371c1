"""Merge speed against a plain copy of the same tensors, in one process (issue #20 part 1).

    PYTHONPATH=$PWD python bench/bench_merge_speed.py [--layers 30] [--repeats 3] [--no-peft]

On a SmolLM2-135M-shaped float32 LLM (random tensors of its shapes, 0.54 GB), each row is the best of
`--repeats` runs and its ratio to the best plain copy (`clone` of every tensor, and `copy_` into
tensors already allocated) measured in the same process: 1.0 means "as fast as copying the weights".
The merges read two tensors per key and write one; a copy reads one and writes one.

Rows: MERA full (θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁)/i: the old whole-tensor path, the fused kernel in place and
into new tensors, `torch.lerp` and `p + (v − p)/3` for reference), MERA's LoRA fold (θᵢ₋₁ + ΔW/i), the
fold of the task-vector merges (θ₀ + λ·mixed) and LPM's apply step (θ₀ + ΔW), and task arithmetic over
three stages end to end. `--peft` adds peft's `add_weighted_adapter` + `merge_adapter` against our
`lora_delta_weights` + fold on the same LoRA merge (a LlamaForCausalLM of the same shape, r = 16).
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_merge_memory import SIZES, llama_shapes  # the same LLM shapes (bench/ is on the path)

from hf_mera.merging import build_merge, kernels, mera_tensors


def smollm2_shapes(layers: int = 30) -> dict[str, tuple[int, ...]]:
    """SmolLM2-135M's LLM tensors (hidden 576, 9 heads (3 KV), MLP 1536, vocabulary 49152, tied
    embeddings), `layers` of its 30 layers: the memory benchmark's shapes without its connector."""
    hidden, _, mlp, kv, vocab = SIZES["smollm2-135m"]
    shapes = llama_shapes(hidden, layers, mlp, kv, vocab)
    return {key: shape for key, shape in shapes.items() if key.startswith("model.language_model.")}


def best(fn, repeats: int) -> float:
    fn()  # warm up (first touch of new pages)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def old_full_merge(previous, vanilla, c):
    # The pre-#20 path (merge_state_dicts → interpolate): float32 copies, whole-tensor ops, isfinite pass.
    out = {}
    for key, p in previous.items():
        v = kernels.interpolate_reference(p, vanilla[key], c)
        if not torch.isfinite(v).all():
            raise ValueError(key)
        out[key] = v
    return out


class _History:
    seed = 0

    def __init__(self, starts, vanillas):
        self.starts, self.vanillas, self.index = starts, vanillas, len(vanillas)

    def start(self, k):
        return self.starts[k - 1]

    def vanilla(self, k):
        return self.vanillas[k - 1]

    def lora_deltas(self, k):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peft", action="store_true", help="also time peft's add_weighted_adapter")
    args = parser.parse_args()
    torch.manual_seed(0)
    shapes = smollm2_shapes(args.layers)
    prev = {k: torch.randn(s) * 0.02 for k, s in shapes.items()}
    van = {k: v + torch.randn(v.shape) * 1e-3 for k, v in prev.items()}
    delta = {k: torch.randn(v.shape) * 1e-3 for k, v in prev.items()}
    work = {k: v.clone() for k, v in van.items()}  # overwritten by the in-place rows
    targets = {k: torch.empty_like(v) for k, v in van.items()}
    gb = sum(v.numel() * 4 for v in prev.values()) / 1e9
    print(
        f"SmolLM2-135M-shaped LLM: {sum(v.numel() for v in prev.values()) / 1e6:.1f} M params, {gb:.2f} GB float32"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, block {kernels.BLOCK} elements\n")

    rows = {}
    rows["copy: clone every tensor"] = best(lambda: {k: v.clone() for k, v in van.items()}, args.repeats)
    rows["copy: copy_ into allocated"] = best(
        lambda: [targets[k].copy_(v) for k, v in van.items()], args.repeats
    )
    rows["MERA full, old path (whole-tensor ops + isfinite)"] = best(
        lambda: old_full_merge(prev, van, 1 / 3), args.repeats
    )
    rows["torch.lerp(p, v, 1/3) (fma: other rounding)"] = best(
        lambda: {k: torch.lerp(p, van[k], 1 / 3) for k, p in prev.items()}, args.repeats
    )
    rows["p + (v - p) / 3, whole tensors"] = best(
        lambda: {k: p + (van[k] - p) / 3 for k, p in prev.items()}, args.repeats
    )
    rows["MERA full, fused, new tensors"] = best(
        lambda: dict(mera_tensors(prev, van, 3, include=None)), args.repeats
    )
    rows["MERA full, fused, in place (the stage merge)"] = best(
        lambda: dict(mera_tensors(prev, work, 3, include=None, inplace=True)), args.repeats
    )
    rows["MERA LoRA fold p + ΔW/i, fused, in place"] = best(
        lambda: [kernels.add_scaled(p, delta[k], 1 / 3, key=k, out=work[k]) for k, p in prev.items()],
        args.repeats,
    )
    rows["task-vector / LPM fold θ₀ + λ·Δ, fused, in place"] = best(
        lambda: [kernels.add_scaled(p, delta[k], 0.7, key=k, out=work[k]) for k, p in prev.items()],
        args.repeats,
    )
    merge = build_merge({"method": "task_arithmetic", "weights": "mean"})
    starts = [prev, prev, prev]
    vanillas = [van, van, work]
    rows["task_arithmetic over 3 stages, end to end (reads θ₀ + 3 vanillas/key)"] = best(
        lambda: dict(merge.tensors(_History(starts, vanillas))), args.repeats
    )

    copy = rows["copy: clone every tensor"]
    copy_into = rows["copy: copy_ into allocated"]
    print("| operation | seconds | clone / this | copy_ / this |\n|---|---|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.3f} | {copy / seconds:.2f} | {copy_into / seconds:.2f} |")

    if args.peft:
        peft_rows(args)


def peft_rows(args) -> None:
    """peft's add_weighted_adapter + merge_adapter against lora_delta_weights + our fold, same LoRA."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_mera.merging import lora_delta_weights

    config = LlamaConfig(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=args.layers, num_attention_heads=9,
        num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    def fresh():
        model = get_peft_model(
            LlamaForCausalLM(config), LoraConfig(r=16, lora_alpha=32, target_modules=targets)
        )
        torch.manual_seed(1)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.02)  # B = 0 at init would make ΔW = 0
        return model

    i = 3

    def ours(model):
        deltas = lora_delta_weights(model)
        weights = {k: p for k, p in model.base_model.model.state_dict().items()}
        with torch.no_grad():
            for key, d in deltas.items():
                plain = key.replace(".weight", ".base_layer.weight")
                w = weights[plain]
                kernels.add_scaled(w, d, 1 / i, key=key, out=w)

    def theirs(model):
        model.add_weighted_adapter(["default"], [1 / i], "merged", combination_type="linear")
        model.set_adapter("merged")
        model.merge_adapter()

    times = {}
    for name, fn in (
        ("ours: lora_delta_weights + fused fold", ours),
        ("peft: add_weighted_adapter + merge_adapter", theirs),
    ):
        samples = []
        for _ in range(args.repeats):
            model = fresh()
            start = time.perf_counter()
            fn(model)
            samples.append(time.perf_counter() - start)
        times[name] = min(samples)
    base = times["peft: add_weighted_adapter + merge_adapter"]
    print(
        "\n| LoRA merge θᵢ₋₁ + BᵢAᵢ/i (SmolLM2 shape, r 16, 7 modules/layer) | seconds | peft / this |\n|---|---|---|"
    )
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.3f} | {base / seconds:.2f} |")


if __name__ == "__main__":
    main()
