"""What the phase store's self-check costs when a phase is reused (issue #23.3).

    python bench/bench_phase_store.py [--mb 14 270] [--repeats 5]

For a phase folder holding one safetensors file of each size (14 MB: the tiny test curriculum's
phase; 270 MB: SmolLM2-135M in bf16), it times, in the same process and on the same warm page cache:

- `read`: reading every byte of the file (the baseline: what any check must at least do);
- `verify`: `CheckpointStore.verify`, i.e. xxh3-128 of every file against phase.json (what a reuse costs);
- `sha256`, `blake2b`: the same check with hashlib's digests, the alternatives considered;
- `load`: `safetensors.torch.load_file` and a copy of every tensor (load_file alone maps the file
  lazily), what loading a reused phase into a model costs anyway.

Prints seconds (median of the repeats) and each as a ratio to `read`. A cold cache (first read from
disk) makes every line slower by the disk's time, so the hash's share only shrinks.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainers.checkpoints import CheckpointStore  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()  # warm the page cache and the code path
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def read_all(path: Path) -> None:
    with open(path, "rb") as file:
        while file.read(1 << 20):
            pass


def hash_with(algorithm):
    def run(path: Path) -> str:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, algorithm).hexdigest()

    return run


def bench(mb: int, repeats: int, root: Path) -> list[tuple[str, float]]:
    store = CheckpointStore(root / f"store-{mb}")
    tmp = store.begin("it-image", "k")
    weights = torch.randn(mb * (1 << 20) // 4, generator=torch.Generator().manual_seed(0))
    save_file({"weight": weights}, str(tmp / "model.safetensors"))
    checkpoint = store.commit("it-image", "k", tmp, {"phase": "bench"})
    model = checkpoint.path / "model.safetensors"
    record = __import__("json").loads((checkpoint.path / "phase.json").read_text())

    def verify():
        store._verified.clear()  # check again every time, as a new process would
        assert store.verify(checkpoint.path, record)

    return [
        ("read", timed(lambda: read_all(model), repeats)),
        ("verify (xxh3_128)", timed(verify, repeats)),
        ("sha256", timed(lambda: hash_with(hashlib.sha256)(model), repeats)),
        ("blake2b", timed(lambda: hash_with(hashlib.blake2b)(model), repeats)),
        (
            "load (safetensors)",
            timed(lambda: {k: v.clone() for k, v in load_file(str(model)).items()}, repeats),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, nargs="+", default=[14, 270])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for mb in args.mb:
            rows = bench(mb, args.repeats, Path(folder))
            baseline = rows[0][1]
            print(f"\n{mb} MB phase file (median of {args.repeats})")
            print(f"| {'what':<20} | {'seconds':>8} | {'× read':>7} | {'GB/s':>6} |")
            print(f"|{'-' * 22}|{'-' * 10}|{'-' * 9}|{'-' * 8}|")
            for name, seconds in rows:
                rate = mb / 1024 / seconds
                print(f"| {name:<20} | {seconds:8.4f} | {seconds / baseline:7.2f} | {rate:6.1f} |")


if __name__ == "__main__":
    main()
