"""Wall time of the main job (`accelerate launch hf_mera/run.py`, the quickstart) against its budget.

    python bench/bench_quickstart.py [--fresh] [--keep DIR] [extra overrides ...]

Runs the quickstart in a subprocess exactly as the README does, into a temporary output folder (so
nothing is reused: backbone, feature cache and every phase are computed; the embedded benchmark is
rebuilt too with --fresh). Machines here are noisy, so it first times a fixed reference workload in
this process — plain-torch training steps of the quickstart's tiny Llama — and prints the
quickstart's time as a ratio to it as well as in seconds, plus the run's own table of wall time per
phase type (`trainers/timing.py`; evaluation's share is read there) and, per stage, MERA's realignment
against its instruction tuning (wall seconds from each phase's `phase.json`, issue #20 part 5).
`--keep DIR` keeps the run's output folder there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUDGET_SECONDS = 360  # issue #20: the quickstart within 6 minutes on 2 cores (install excluded)


def realign_against_instruction_tuning(out: Path) -> list[str]:
    """Per MERA stage: realignment's and instruction tuning's wall seconds (their `phase.json` costs)."""
    lines = []
    for stage_dir in sorted(out.glob("mera*/stage-*")):
        info = json.loads((stage_dir / "stage.json").read_text())
        checkpoint = out / "checkpoints" / info["checkpoint"]
        record = json.loads((checkpoint / "phase.json").read_text())
        if record["description"].get("phase") != "realign":
            continue
        merge = out / "checkpoints" / record["parent"]
        it = out / "checkpoints" / json.loads((merge / "phase.json").read_text())["parent"]
        # The merge's parent is θᵢ,vanilla's checkpoint only when the merge reads one stage; walk up to it.
        while json.loads((it / "phase.json").read_text())["description"].get("phase") != "instruction_tuning":
            it = out / "checkpoints" / json.loads((it / "phase.json").read_text())["parent"]
        realign_s = record["cost"]["wall_seconds"]
        it_s = json.loads((it / "phase.json").read_text())["cost"]["wall_seconds"]
        lines.append(
            f"| {info['stage']} ({info['modality']}) | {it_s:.1f} | {realign_s:.1f} | +{100 * realign_s / it_s:.1f} % |"
        )
    return lines


def reference_workload(steps: int = 50) -> float:
    """Seconds for `steps` AdamW steps of a hidden-128, 4-layer Llama on batch 32 × 24 tokens."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=100, hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4
    )
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 100, (32, 24))
    start = time.perf_counter()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="also rebuild the embedded benchmark")
    parser.add_argument("--keep", type=Path, help="keep the run's output folder here")
    args, overrides = parser.parse_known_args()
    reference = reference_workload()
    print(f"reference workload (50 tiny-Llama steps): {reference:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        if args.fresh:
            env["HF_MERA_CACHE"] = str(Path(tmp) / "cache")
        command = [
            "accelerate",
            "launch",
            "hf_mera/run.py",
            "--output_dir",
            str(Path(tmp) / "out"),
            *overrides,
        ]
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            print(log[-5000:])
            return proc.returncode
        report = (Path(tmp) / "out" / "report.md").read_text()
        benchmark_hash = json.loads((Path(tmp) / "out" / "results.json").read_text())["benchmark_hash"]
        efficiency = report[report.find("## Efficiency") :] if "## Efficiency" in report else ""
        realign_lines = realign_against_instruction_tuning(Path(tmp) / "out")
        if args.keep:
            shutil.copytree(Path(tmp) / "out", args.keep, dirs_exist_ok=True)
    print(" ".join(command))
    print(f"benchmark content hash: {benchmark_hash}")
    print(
        "versions: "
        + ", ".join(f"{p} {version(p)}" for p in ("torch", "transformers", "trl", "peft", "accelerate"))
    )
    print(
        f"quickstart wall time: {seconds:.0f} s ({seconds / 60:.1f} min; budget {BUDGET_SECONDS / 60:.0f} min)"
    )
    print(f"ratio to the reference workload: {seconds / reference:.0f}x")
    print(f"within budget: {'yes' if seconds <= BUDGET_SECONDS else 'NO'}")
    phases = re.findall(r"(\d\d:\d\d:\d\d),\d+ INFO trainers\.workspace: phase (\S+) \(\w+\): running", log)
    if phases:
        print(
            f"{len(phases)} phases trained; first {phases[0][1]} at {phases[0][0]}, last {phases[-1][1]} at {phases[-1][0]}"
        )
    stdout = proc.stdout
    print(
        stdout[stdout.rfind("Scores and Relative Gains") :]
        if "Scores and Relative Gains" in stdout
        else stdout[-3000:]
    )
    print(efficiency)
    if realign_lines:
        print("\nMERA's realignment against the stage's instruction tuning (wall seconds, phase.json)\n")
        print("| stage | instruction tuning | realignment | realignment / instruction tuning |")
        print("|---|---|---|---|")
        print("\n".join(realign_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
