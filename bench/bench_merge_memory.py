"""Peak memory and time of MERA's stage merge against model size, streamed and in memory (issues #19
part 3, #20 part 7).

    PYTHONPATH=$PWD python bench/bench_merge_memory.py [--sizes tiny smollm2-135m llama-1b] [--dir /tmp/merge-bench]

For each size, θᵢ₋₁ and θᵢ,vanilla (random float32 tensors of a Llama's shapes, LLM keys as in
AnyModalityLlava) are written to `--dir` as safetensors, one tensor at a time. A child process then
merges them (θᵢ = θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁)/3) and reports its peak RSS (`VmHWM` of
/proc/self/status: `resource.getrusage`'s maxrss of a child also counts the RSS its parent had when
it forked, which here held the generated tensors) and wall time:
- streamed: `SafetensorsStateDict` inputs, `mera_tensors(..., inplace=True)`, `write_merged` (what the
  stage loop's merge phase runs);
- in memory: `safetensors.torch.load_file` of both, `mera_merge_state_dict`, `save_file` (skipped
  above `--in-memory-max` parameters: it needs three models of RAM on a shared machine).
The child's RSS right after its imports is reported too (torch alone), and "above imports" is what the
merge itself added. Time per parameter should be flat (linear in parameters).
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
from pathlib import Path

import torch

SIZES = {
    # name: hidden, layers, MLP, KV width, vocabulary
    "tiny": (128, 4, 512, 128, 1000),
    "smollm2-135m": (576, 30, 1536, 192, 49152),
    "llama-1b": (2048, 16, 8192, 512, 128256),  # Llama-3.2-1B's shapes (tied embeddings)
}


def llama_shapes(hidden, layers, mlp, kv, vocab) -> dict[str, tuple[int, ...]]:
    shapes = {"model.language_model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.language_model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": (hidden, hidden),
            p + "self_attn.k_proj.weight": (kv, hidden),
            p + "self_attn.v_proj.weight": (kv, hidden),
            p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (mlp, hidden),
            p + "mlp.up_proj.weight": (mlp, hidden),
            p + "mlp.down_proj.weight": (hidden, mlp),
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
        }
    shapes["model.language_model.norm.weight"] = (hidden,)
    shapes["model.connectors.image.linear_1.weight"] = (hidden, 256)  # not merged: copied from vanilla
    return shapes


def write_random(path: Path, shapes: dict[str, tuple[int, ...]], seed: int) -> None:
    """A float32 safetensors file of random tensors, written one tensor at a time (never the whole model)."""
    offsets, header, start = {}, {}, 0
    for key, shape in shapes.items():
        nbytes = 4 * int(torch.Size(shape).numel())
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [start, start + nbytes]}
        offsets[key] = start
        start += nbytes
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    generator = torch.Generator().manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for shape in shapes.values():
            tensor = torch.randn(shape, generator=generator) * 0.02
            f.write(memoryview(tensor.view(-1).view(torch.uint8).numpy()))


CHILD = r"""
import json, resource, sys, time
import torch
from hf_mera.merging import mera_merge_state_dict, mera_tensors
from hf_mera.merging.streaming import SafetensorsStateDict, write_merged
mode, prev, van, out = sys.argv[1:5]
def rss():
    # VmHWM: the peak RSS of this process's own memory since exec. (ru_maxrss would do on a small
    # parent, but Linux carries the parent's RSS at fork into the child's ru_maxrss across exec.)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
after_imports = rss()
start = time.perf_counter()
if mode == "streamed":
    vanilla = SafetensorsStateDict(van)
    write_merged(mera_tensors(SafetensorsStateDict(prev), vanilla, 3, inplace=True), vanilla, out)
else:
    from safetensors.torch import load_file, save_file
    merged = mera_merge_state_dict(load_file(prev + "/model.safetensors"), load_file(van + "/model.safetensors"), 3)
    save_file(merged, out + "/model.safetensors", metadata={"format": "pt"})
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss": rss(), "after_imports": after_imports}))
"""


def run_child(mode: str, prev: Path, van: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(prev), str(van), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--dir", default="/tmp/merge-bench")
    parser.add_argument("--in-memory-max", type=float, default=3e8, help="largest model merged in memory")
    args = parser.parse_args()
    root = Path(args.dir)
    print("| model | params | file (GB) | mode | peak RSS (GB) | above imports (GB) | seconds | ns / param |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.sizes:
        shapes = llama_shapes(*SIZES[name])
        params = sum(int(torch.Size(s).numel()) for s in shapes.values())
        prev, van = root / name / "previous", root / name / "vanilla"
        for folder, seed in ((prev, 0), (van, 1)):
            if not (folder / "model.safetensors").is_file():
                write_random(folder / "model.safetensors", shapes, seed)
        modes = ["streamed"] + (["in memory"] if params <= args.in_memory_max else [])
        for mode in modes:
            out = root / name / f"merged-{mode.replace(' ', '-')}"
            r = run_child(mode.split()[0] if mode == "streamed" else "memory", prev, van, out)
            gb = lambda b: f"{b / 1e9:.2f}"  # noqa: E731
            print(
                f"| {name} | {params / 1e6:.1f} M | {gb(4 * params)} | {mode} | {gb(r['peak_rss'])} | "
                f"{gb(r['peak_rss'] - r['after_imports'])} | {r['seconds']:.2f} | {1e9 * r['seconds'] / params:.2f} |",
                flush=True,
            )
        if len(modes) == 2:  # the two merges wrote the same tensors
            from safetensors.torch import load_file

            a = load_file(str(root / name / "merged-streamed" / "model.safetensors"))
            b = load_file(str(root / name / "merged-in-memory" / "model.safetensors"))
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


if __name__ == "__main__":
    main()
