"""One optimiser step of each phase trainer against a plain PyTorch loop (issue #20, part 2).

    nice -n 10 python bench/bench_trainers.py [--steps 40] [--rounds 3] [--batch 32]

For connector pre-training, instruction tuning (full and LoRA) and realignment, on the quickstart's
shapes (`bench/_shapes.py`: tiny Llama hidden 128 × 4 layers, 8 feature tokens per item, batch 32, cached
features through `MultimodalCollator`), it times steps of
- **plain**: `for batch in DataLoader(…, collate_fn=the trainer's collator)`: `model(**batch).loss`,
  `backward`, `clip_grad_norm_`, `optimizer.step`, `scheduler.step`, `zero_grad`, with the optimiser and
  scheduler the trainer itself builds (`create_optimizer`, `create_scheduler`) on the model the trainer
  prepared (same trainable parameters, same LoRA wrapping);
- **trainer**: `trainer.train()` as the phases run it (per-step metrics at logging steps only);
- **trainer, trl per step**: the same trainer with `step_metrics="every_step"`, trl 1.16's behaviour
  (entropy and token accuracy computed, gathered and `.item()`-ed on every step).
Per-step time is measured between the `on_step_end` callbacks of steps `warmup` and `warmup + steps`
(data loading included, set-up excluded), in CPU seconds of this process on one thread; each round
runs the three variants one after another on fresh models, and the report takes each variant's fastest
round (other users of the machine only ever add time). Ratios are against plain in the same process.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _shapes  # noqa: E402
import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

WARMUP = 3


def clock() -> float:
    """CPU seconds of this process (or wall seconds with --wall): on a shared machine the CPU time of
    a single-threaded run is what the work costs; the wall time also counts the other users."""
    return time.perf_counter() if WALL else time.process_time()


WALL = False


class StepClock(TrainerCallback):
    def __init__(self):
        self.times = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(clock())


def per_step(times: list[float], steps: int) -> float:
    return (times[WARMUP + steps - 1] - times[WARMUP - 1]) / steps


def make_trainer(
    phase: str, tmp: str, steps: int, batch: int, step_metrics: str = "logging_steps", modalities: int = 0
):
    """A phase trainer on fresh quickstart-shaped model and data, not yet trained. The model has
    `modalities` modalities (default: 4 for realignment, 1 otherwise); the phase trains the last one
    (realignment: all of them)."""
    from hf_mera.data.collator import MultimodalCollator
    from trainers import (
        ConnectorPretrainConfig,
        ConnectorPretrainTrainer,
        InstructionTuningConfig,
        InstructionTuningTrainer,
        RealignConfig,
        RealignTrainer,
    )

    seen = _shapes.modality_names(modalities or (4 if phase == "realign" else 1))
    model, processor = _shapes.build(seen)
    if phase != "realign":
        seen = seen[-1:]  # the stage's new modality
    total = WARMUP + steps + 1
    common = dict(
        output_dir=tmp,
        use_cpu=True,
        bf16=False,
        report_to="none",
        max_steps=total,
        per_device_train_batch_size=batch,
        logging_steps=50,  # what the phases use (trainers.configs.phase_args)
        disable_tqdm=True,
        learning_rate=5e-4,
        seed=0,
        step_metrics=step_metrics,
    )
    collator = MultimodalCollator(processor, feature_lookup=_shapes.feature_lookup)
    data = _shapes.dataset(seen, per_modality=max(64, batch * total // len(seen) + batch))
    if phase == "connector_pretrain":
        return ConnectorPretrainTrainer(
            model, seen[0], ConnectorPretrainConfig(**common), data, processor, collator
        )
    if phase.startswith("instruction_tuning"):
        lora = phase.endswith("lora")
        args = InstructionTuningConfig(**common, use_lora=lora, lora_r=8, lora_alpha=16, lora_dropout=0.0)
        return InstructionTuningTrainer(model, seen[0], args, data, processor, collator)
    return RealignTrainer(model, seen, RealignConfig(**common), data, processor, collator)


def time_trainer(phase: str, steps: int, batch: int, step_metrics: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(phase, tmp, steps, batch, step_metrics)
        clock = StepClock()
        trainer.add_callback(clock)
        trainer.train()
        return per_step(clock.times, steps)


def time_plain(phase: str, steps: int, batch: int) -> float:
    """The plain loop on the model, optimiser and scheduler the trainer builds."""
    from torch.utils.data import DataLoader

    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(phase, tmp, steps, batch)
        model = trainer.model
        model.train()
        optimizer = trainer.create_optimizer()
        scheduler = trainer.create_scheduler(trainer.args.max_steps, optimizer)
        params = [p for p in model.parameters() if p.requires_grad]
        loader = DataLoader(
            trainer.train_dataset,
            batch_size=batch,
            shuffle=True,
            collate_fn=trainer.data_collator,
            generator=torch.Generator().manual_seed(0),
        )
        times = []
        batches = iter(loader)
        for _ in range(WARMUP + steps):
            try:
                inputs = next(batches)
            except StopIteration:
                batches = iter(loader)
                inputs = next(batches)
            loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, trainer.args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(clock())
        return per_step(times, steps)


PHASES = ("connector_pretrain", "instruction_tuning_full", "instruction_tuning_lora", "realign")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--phases", nargs="*", default=list(PHASES))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU time is exact with 1)")
    parser.add_argument("--wall", action="store_true", help="time wall seconds instead of CPU seconds")
    args = parser.parse_args()
    global WALL
    WALL = args.wall
    torch.set_num_threads(args.threads)
    print(
        f"torch threads: {torch.get_num_threads()}; {'wall' if WALL else 'CPU'} time of {args.steps} steps "
        f"after {WARMUP}; batch {args.batch}; fastest of {args.rounds} rounds"
    )
    print(
        "| phase | plain (ms/step) | trainer (ms/step) | trainer / plain | trl per-step metrics (ms/step) | its / plain |"
    )
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for phase in args.phases:
        runs = {"plain": [], "thin": [], "every": []}
        for _ in range(args.rounds):
            runs["plain"].append(time_plain(phase, args.steps, args.batch))
            runs["thin"].append(time_trainer(phase, args.steps, args.batch, "logging_steps"))
            runs["every"].append(time_trainer(phase, args.steps, args.batch, "every_step"))
        # The least disturbed round of each (min): on a shared machine, other users only ever add time.
        plain, thin, every = (min(runs[k]) for k in ("plain", "thin", "every"))
        worst = max(worst, thin / plain)
        print(
            f"| {phase} | {1000 * plain:.1f} | {1000 * thin:.1f} | **{thin / plain:.3f}x** "
            f"| {1000 * every:.1f} | {every / plain:.3f}x |",
            flush=True,
        )
        rounds = "; ".join(f"{k} " + " ".join(f"{1000 * v:.0f}" for v in runs[k]) for k in runs)
        print(f"<!-- {phase} rounds (ms/step): {rounds} -->", flush=True)
    print(f"worst trainer / plain: {worst:.3f}x (target <= 1.10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
