"""A stage's cost against the number of modalities seen, 2 to 8 (issue #20, part 7).

    nice -n 10 python bench/bench_scaling.py [--max-modalities 8] [--steps 8] [--out bench/scaling_modalities.png]

For a model that knows k modalities (quickstart-shaped, `bench/_shapes.py`; past the four real names,
extra synthetic ones of the same shape) and stage k, it measures the unit cost of every part of a MERA
stage, in CPU seconds of this process on one thread (the machine is shared):
- one optimiser step of connector pre-training and of full instruction tuning on modality k, and of
  realignment on a batch mixing all k modalities (the phase trainers, `bench_trainers.make_trainer`);
- MERA's merge of the LLM (`mera_merge_state_dict`, stage k);
- generating answers for 32 test rows of modality k (batch 32, 12 new tokens).
These should be flat in k: a connector, encoder and placeholder row more do not enter a step that does
not use them. What grows with k by the method's design is the number of realignment steps (r % of every
seen modality's data) and the evaluation of every seen modality; the lower panel multiplies the unit
costs by the quickstart's counts (100 pre-training and 200 instruction-tuning steps, realignment 8
epochs of 10 % of 800 rows per seen modality at batch 32, 120 test rows per seen modality) to show the
stage's total. Writes the PNG and prints the table.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _shapes  # noqa: E402
import bench_trainers  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def step_cost(phase: str, k: int, steps: int) -> float:
    bench_trainers.WALL = False
    with tempfile.TemporaryDirectory() as tmp:
        trainer = bench_trainers.make_trainer(phase, tmp, steps, 32, modalities=k)
        clock = bench_trainers.StepClock()
        trainer.add_callback(clock)
        trainer.train()
        return bench_trainers.per_step(clock.times, steps)


def merge_cost(k: int) -> float:
    from hf_mera.merging.mera import mera_merge_state_dict

    model, _ = _shapes.build(_shapes.modality_names(k))
    previous = {n: t.clone() for n, t in model.state_dict().items()}
    vanilla = {n: t + 0.01 for n, t in previous.items()}
    start = time.process_time()
    for _ in range(5):
        mera_merge_state_dict(previous, vanilla, k)
    return (time.process_time() - start) / 5


def generation_cost(k: int, rows: int = 32) -> float:
    from hf_mera.evaluation import generate_predictions

    names = _shapes.modality_names(k)
    model, processor = _shapes.build(names)
    test = _shapes.rows(names[-1], rows, seed=5)
    generate_predictions(model, processor, test[:2], batch_size=2, max_new_tokens=2, progress=False,
                         feature_lookup=_shapes.feature_lookup)  # fmt: skip
    start = time.process_time()
    generate_predictions(
        model,
        processor,
        test,
        batch_size=rows,
        max_new_tokens=12,
        progress=False,
        feature_lookup=_shapes.feature_lookup,
    )
    return (time.process_time() - start) / rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-modalities", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "scaling_modalities.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ks = list(range(2, args.max_modalities + 1))
    unit = {
        name: []
        for name in ("connector_pretrain", "instruction_tuning_full", "realign", "merge", "generation")
    }
    print("| modalities seen | pre-training step (ms) | instruction-tuning step (ms) | realign step (ms) "
          "| merge (ms) | generation per row (ms) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for k in ks:
        for phase in ("connector_pretrain", "instruction_tuning_full", "realign"):
            unit[phase].append(step_cost(phase, k, args.steps))
        unit["merge"].append(merge_cost(k))
        unit["generation"].append(generation_cost(k))
        print(
            f"| {k} | " + " | ".join(f"{1000 * unit[name][-1]:.1f}" for name in unit) + " |",
            flush=True,
        )
    totals = {
        "connector pre-training (100 steps)": [100 * c for c in unit["connector_pretrain"]],
        "instruction tuning (200 steps)": [200 * c for c in unit["instruction_tuning_full"]],
        "merge": unit["merge"],
        "realignment (8 epochs of 10 % × k × 800 rows)": [
            math.ceil(0.1 * 800 * k / 32) * 8 * c for k, c in zip(ks, unit["realign"])
        ],
        "evaluation (120 rows × k)": [120 * k * c for k, c in zip(ks, unit["generation"])],
    }
    for k_index, k in enumerate(ks):
        stage = sum(values[k_index] for values in totals.values())
        parts = ", ".join(f"{name.split(' (')[0]} {values[k_index]:.1f}" for name, values in totals.items())
        print(f"stage {k}: {stage:.1f} CPU s ({parts})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 8), sharex=True)
    for name, values in unit.items():
        base = values[0]
        top.plot(ks, [v / base for v in values], marker="o", label=name)
    top.axhline(1.0, color="grey", lw=0.5)
    top.set_ylabel(f"unit cost / its cost at k={ks[0]}")
    top.set_title("Unit costs against modalities seen (flat = no growth)", fontsize=10)
    top.set_ylim(0, 2)
    top.legend(fontsize=8)
    bottom.stackplot(ks, *totals.values(), labels=list(totals))
    bottom.set_xlabel("modalities seen k (stage k)")
    bottom.set_xticks(ks)
    bottom.set_ylabel("CPU seconds (quickstart counts)")
    bottom.set_title("A MERA stage's total (grows where the method reads every seen modality)", fontsize=10)
    bottom.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
