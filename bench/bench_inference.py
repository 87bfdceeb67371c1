"""Inference speed of the final MERA model against the same architecture with no merge history, and
PathWeave's overhead (issue #20, part 4; the paper's Table 6: PathWeave 111 ms against 34 ms per token).

    nice -n 10 python bench/bench_inference.py [--rounds 5] [--new-tokens 32] [--prompts 16]

Models, all quickstart-shaped (`bench/_shapes.py`: tiny Llama hidden 128 × 4 layers, four modalities):
- **plain**: the architecture built from its config, never merged (no history);
- **MERA**: the same model after stages 2–4 of MERA's merge θᵢ = θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁)/i on the LLM
  (`hf_mera.merging.mera.mera_merge_state_dict`, each θᵢ,vanilla a perturbed copy standing in for an
  instruction-tuned LLM), saved with `save_pretrained` and reloaded with `from_pretrained`, as a run
  publishes its last stage. Its module tree, parameter names and forward hooks are compared with
  plain's: nothing may be extra in the graph;
- **PathWeave**: plain plus PathWeave's Adapter-in-Adapter modules for the four modalities
  (`set_llm_adapters`, rank 8 on the attention projections, as `trainers/methods/pathweave.py`).
Each generates greedily with the KV cache at batch size 1 (Table 6's setting) on the same prompts, forced
to `--new-tokens` tokens (`min_new_tokens`), through `hf_mera.evaluation.generate_predictions` with
cached features. Time is this process's CPU time on one thread (the machine is shared), rounds
interleaved, median reported; ratios are tokens/s against plain in the same process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _shapes  # noqa: E402
import torch  # noqa: E402


def graph(model) -> list[tuple[str, str]]:
    """(name, type) of every module and (name, shape) of every parameter and buffer, plus hook counts."""
    modules = [(name, type(m).__name__) for name, m in model.named_modules()]
    tensors = [(name, str(tuple(t.shape))) for name, t in [*model.named_parameters(), *model.named_buffers()]]
    hooks = [
        (name, f"hooks {len(m._forward_hooks)}/{len(m._forward_pre_hooks)}")
        for name, m in model.named_modules()
        if m._forward_hooks or m._forward_pre_hooks
    ]
    return modules + tensors + hooks


def mera_model(modalities, tmp: Path):
    """The plain model after MERA's merges of stages 2..n on its LLM, saved and reloaded."""
    from hf_mera import AnyModalityLlava
    from hf_mera.merging.mera import mera_merge_state_dict

    model, processor = _shapes.build(modalities)
    llm = {k: v for k, v in model.state_dict().items() if "language_model." in k or k.startswith("lm_head.")}
    merged = {k: v.clone() for k, v in llm.items()}
    g = torch.Generator().manual_seed(0)
    for stage in range(2, len(modalities) + 1):
        vanilla = {k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in merged.items()}
        merged = mera_merge_state_dict(merged, vanilla, stage)
    model.load_state_dict(merged, strict=False)
    model.save_pretrained(tmp / "mera")
    processor.save_pretrained(tmp / "mera")
    return AnyModalityLlava.from_pretrained(tmp / "mera"), processor


def pathweave_model(modalities):
    model, processor = _shapes.build(modalities)
    model.set_llm_adapters({"type": "pathweave", "rank": 8, "modalities": list(modalities)})
    return model, processor


def time_generation(model, processor, rows, new_tokens: int) -> tuple[float, int]:
    from hf_mera.evaluation import generate_predictions

    start = time.process_time()
    predictions = generate_predictions(
        model,
        processor,
        rows,
        batch_size=1,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        progress=False,
        feature_lookup=_shapes.feature_lookup,
    )
    return time.process_time() - start, len(predictions) * new_tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    modalities = _shapes.modality_names(4)
    rows = [row for m in modalities for row in _shapes.rows(m, args.prompts // len(modalities), seed=7)]
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "plain": _shapes.build(modalities),
            "MERA": mera_model(modalities, Path(tmp)),
            "PathWeave": pathweave_model(modalities),
        }
        # As multisets: from_pretrained may register the same modules in another order.
        same = sorted(graph(models["plain"][0])) == sorted(graph(models["MERA"][0]))
        extra = sorted(set(graph(models["MERA"][0])) ^ set(graph(models["plain"][0])))
        print(f"MERA's graph equals plain's (modules, parameters, buffers, hooks): {same} {extra[:5]}")
        pathweave_extra = len(set(graph(models["PathWeave"][0])) - set(graph(models["plain"][0])))
        print(f"PathWeave adds {pathweave_extra} modules / tensors / hooks to the graph")
        times = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, (model, processor) in models.items():
                seconds, tokens = time_generation(model, processor, rows, args.new_tokens)
                times[name].append(seconds / tokens)
    plain = statistics.median(times["plain"])
    print(
        f"\nbatch 1, KV cache, {len(rows)} prompts × {args.new_tokens} new tokens, one thread, CPU time, "
        f"median of {args.rounds} interleaved rounds\n"
    )
    print("| model | ms per token | tokens/s | tokens/s against plain |")
    print("|---|---|---|---|")
    for name in models:
        per_token = statistics.median(times[name])
        print(f"| {name} | {1000 * per_token:.2f} | {1 / per_token:.0f} | **{plain / per_token:.3f}x** |")
    print("\nthe paper (Table 6, A100): PathWeave 111 ms vs MERA 34 ms per token: 0.306x MERA's tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
