"""Are two runs of the same curriculum the same? Compares two output folders bit for bit.

    python bench/compare_outputs.py OUTPUT_DIR_A OUTPUT_DIR_B

Used to check that a refactor changes no behaviour (issue #9): run the quickstart before and after
into two folders, then compare. It checks
- every published stage's weights (`<method>/stage-*/*.safetensors`), byte for byte;
- the phase checkpoints' names (`checkpoints/<phase>-<key>`): equal keys mean every phase was
  described, hence seeded, identically;
- `results.json`, equal after removing wall-clock fields (training seconds, latency, peak memory),
  which no two runs share.
Exits 1 and lists the differences when there are any.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

TIMING_KEYS = {
    "train_seconds",
    "train_wall_seconds",
    "latency_per_token_ms",
    "train_peak_memory_bytes",
    "infer_peak_memory_bytes",
    "peak_memory_bytes",  # a method record's training peak (ru_maxrss on CPU): measured, like the others
    "seconds",
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage_weights(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _digest(p) for p in sorted(root.glob("*/stage-*/*.safetensors"))}


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def compare(a: Path, b: Path) -> list[str]:
    problems = []
    weights_a, weights_b = stage_weights(a), stage_weights(b)
    if not weights_a:
        problems.append(f"{a}: no published stage weights found")
    for name in sorted(set(weights_a) | set(weights_b)):
        if weights_a.get(name) != weights_b.get(name):
            problems.append(f"weights differ or missing: {name}")
    phases_a = {p.name for p in (a / "checkpoints").iterdir() if p.is_dir() and not p.name.startswith(".")}
    phases_b = {p.name for p in (b / "checkpoints").iterdir() if p.is_dir() and not p.name.startswith(".")}
    for name in sorted(phases_a ^ phases_b):
        problems.append(f"phase only in {'A' if name in phases_a else 'B'}: {name}")
    results_a = without_timing(json.loads((a / "results.json").read_text()))
    results_b = without_timing(json.loads((b / "results.json").read_text()))
    if results_a != results_b:
        problems.append("results.json differs (timing fields removed)")
    print(f"{len(weights_a)} stage weight files, {len(phases_a)} phases, results.json compared")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    problems = compare(args.a, args.b)
    for problem in problems:
        print(problem)
    print("IDENTICAL" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
