"""The sharded engines on GPUs: FSDP2 (`fsdp.yaml`) and DeepSpeed ZeRO-2 / ZeRO-3
(`deepspeed-zero{2,3}.yaml`) against one process, on the CPU tests' tiny curriculum with the LLM
held in bf16 (mixed precision: trainable weights in float32, frozen ones in bf16 inside one sharded
unit, which the CPU tests in float32 cannot show).

    python bench/bench_sharded_gpu.py [--gpus N]       # N processes per engine (default: every GPU)

Each engine runs `hf_mera/run.py` through `accelerate launch --config_file <config> --num_processes N`
with per-process batch 8 / N (one process: batch 8), two methods (LoRA instruction tuning + LPM merge;
PathWeave), image → audio. It checks that every trainer logged its gather,
compares every phase checkpoint behind every published stage with the one-process run (max abs
difference; bf16 rounding makes 1e-2 the bar) and the scores, and prints markdown for
`bench/RESULTS.md`. DeepSpeed engines are skipped when `import deepspeed` fails. Never part of the
tests; needs CUDA (the CPU engines are tested by `tests/test_sharded.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "hf_mera" / "configs" / "accelerate"
ENGINES = {
    "single": CONFIGS / "multi-gpu.yaml",
    "FSDP2": CONFIGS / "fsdp.yaml",
    "ZeRO-2": CONFIGS / "deepspeed-zero2.yaml",
    "ZeRO-3": CONFIGS / "deepspeed-zero3.yaml",
}
# What every engine runs (EWC's penalty under ZeRO-3: gathered term by term, docs/sharding.md).
METHODS = (
    "[{name: LPM merge, type: mera, merge: lpm, realign: false}, {name: PathWeave, type: pathweave}, "
    "{name: EWC, type: ewc, merge: lpm, plugins: [{name: ewc, lambda_: 1000000}]}]"
)
TOLERANCE = 1e-2  # bf16 frozen weights: a few rounding steps of a bf16 value


def overrides(out: Path, data_root: Path, batch: int) -> list[str]:
    return [
        "--output_dir", str(out), "--order", "[image, audio]", "--data.root", str(data_root),
        "--data.embedded", "{caption_train: 48, qa_train: 48, caption_test: 8, qa_test: 8, cross_test: 8, speech_fraction: 0.0}",
        "--model.backbone.hidden_size", "128", "--model.backbone.num_layers", "4",
        "--model.backbone.text_pretrain_steps", "20", "--model.backbone.dtype", "bfloat16",
        "--training.connector_pretrain.max_steps", "4",
        "--training.connector_pretrain.per_device_train_batch_size", str(batch),
        "--training.instruction_tuning.max_steps", "4",
        "--training.instruction_tuning.per_device_train_batch_size", str(batch),
        "--training.instruction_tuning.use_lora", "true",
        "--training.instruction_tuning.lora_r", "8", "--training.instruction_tuning.lora_alpha", "16",
        "--training.instruction_tuning.extra", "{lora_dropout: 0.0}",
        "--training.realign.max_steps", "2",
        "--training.realign.per_device_train_batch_size", str(batch),
        "--evaluation.max_new_tokens", "8", "--evaluation.batch_size", "8",
        "--methods", METHODS,
    ]  # fmt: skip


def run(engine: str, processes: int, out: Path, data_root: Path) -> tuple[int, float, str]:
    batch = 8 if engine == "single" else max(1, 8 // processes)
    n = 1 if engine == "single" else processes
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ENGINES[engine]), "--num_processes", str(n),
        str(REPO / "hf_mera" / "run.py"), *overrides(out, data_root, batch),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (out.parent / f"{engine}.log").write_text(log)
    return proc.returncode, time.perf_counter() - start, log


def chain(root: Path, stage_dir: Path) -> list[Path]:
    name = json.loads((stage_dir / "stage.json").read_text())["checkpoint"]
    found = []
    while name:
        found.append(root / "checkpoints" / name)
        name = json.loads((found[-1] / "phase.json").read_text())["parent"]
    return found


def worst_difference(single: Path, other: Path) -> tuple[float, str]:
    """Max abs difference over every phase checkpoint behind every stage (PathWeave's noisy stage-2
    instruction tuning left out), and where."""
    from safetensors.torch import load_file

    worst, where = 0.0, ""
    for stage_dir in sorted(single.glob("*/stage-*")):
        twin = other / stage_dir.relative_to(single)
        for a, b in zip(chain(single, stage_dir), chain(other, twin)):
            if stage_dir.parent.name == "pathweave" and a.name.startswith("it-audio-"):
                continue
            sa, sb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
            if sa.keys() != sb.keys():
                return float("inf"), f"{b.name}: keys differ"
            for key in sa:
                diff = (sa[key].float() - sb[key].float()).abs().max().item()
                if diff > worst:
                    worst, where = diff, f"{a.name.rsplit('-', 1)[0]}: {key}"
    return worst, where


def scores(out: Path) -> list:
    results = json.loads((out / "results.json").read_text())
    return [[stage["scores"] for stage in r["stages"]] for r in results["records"]]


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=None, help="processes per engine (default: every GPU)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_sharded_gpu: needs CUDA; the CPU engines are tested by tests/test_sharded.py.")
        return 2
    processes = args.gpus or torch.cuda.device_count()
    try:
        import deepspeed  # noqa: F401

        engines = list(ENGINES)
    except Exception as error:  # noqa: BLE001  (any import failure means: not this engine)
        print(f"DeepSpeed not importable ({type(error).__name__}: {error}); ZeRO engines skipped.")
        engines = ["single", "FSDP2"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="hf_mera-sharded-") as tmp:
        root = Path(tmp)
        for engine in engines:
            code, seconds, log = run(engine, processes, root / engine, root / "bench")
            gathered = len(re.findall(r"gathered the whole trained model", log))
            if code != 0:
                rows.append((engine, f"failed (exit {code})", seconds, gathered, "", ""))
                print(log[-3000:])
                continue
            if engine == "single":
                rows.append((engine, "ok", seconds, gathered, "reference", "reference"))
                continue
            worst, where = worst_difference(root / "single", root / engine)
            same = scores(root / "single") == scores(root / engine)
            verdict = "ok" if worst <= TOLERANCE else f"differs by {worst:.3g}"
            rows.append(
                (engine, verdict, seconds, gathered, f"{worst:.3g} ({where})", "equal" if same else "differ")
            )
    print(f"\n{torch.cuda.get_device_name(0)} × {processes} process(es), torch {torch.__version__}\n")
    print("| engine | result | wall s | gathers logged | max abs diff vs one process | scores |")
    print("|---|---|---:|---:|---|---|")
    for engine, verdict, seconds, gathered, diff, same in rows:
        print(f"| {engine} | {verdict} | {seconds:.0f} | {gathered} | {diff} | {same} |")
    return 0 if all(row[1] == "ok" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
