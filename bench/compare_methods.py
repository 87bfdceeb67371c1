"""The comparison: every method and variant in both paper orders over several seeds, as the paper's
Tables 2, 4, 5 and 6 and Figures 3 and 4, beside the paper's own numbers.

    python bench/compare_methods.py [--seeds 0 1] [--orders sequential reverse] [--config compare]
        [--output-dir outputs/compare] [--markdown bench/comparison.md] [--only-report]

Each (order, seed) is one run of `hf_mera/run.py` (in a subprocess, as a user runs it) with every
method below in its `methods` list, into `<output-dir>/<order>-seed<seed>`; methods share the phases
they have in common (content-addressed checkpoints), and a run that was interrupted resumes where it
stopped when the command is run again. The tables are then built from each run's `results.json`:
every number is the mean over seeds with its 95 % confidence interval (Student's t over seeds,
`hf_mera.evaluation.intervals`) after ±, the benchmark's content hash is printed beside them, and
every method's mean Backward RG is compared with MERA (10 %)'s as a paired difference over the same
seeds, marked resolved when its interval excludes 0 (issue #17: at least 3 seeds per order). Run it
alone on the machine: Table 6's times are wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hf_mera.evaluation.intervals import paired_difference, t_interval  # noqa: E402
from hf_mera.evaluation.paper_numbers import TABLE_2, TABLE_4, TABLE_5_REALIGN_GAIN, TABLE_6  # noqa: E402

# Every method and variant of the comparison, as curriculum YAML entries. The realigning add-on uses
# 10 % replay for every method, as the paper's Tables 4 and 5.
METHODS = [
    "{name: Experts, type: experts}",
    "{name: Fine-Tuning, type: fine_tuning}",
    "{name: Fine-Tuning +Realign, type: fine_tuning, realign: true, replay_ratio: 0.1}",
    "{name: Replay (1%), type: replay, replay_ratio: 0.01}",
    "{name: Replay (1%) +Realign, type: replay, replay_ratio: 0.01, realign: true, realign_ratio: 0.1}",
    "{name: Replay (10%), type: replay, replay_ratio: 0.1}",
    "{name: Replay (10%) +Realign, type: replay, replay_ratio: 0.1, realign: true}",
    "{name: EWC, type: ewc}",
    "{name: EWC +Realign, type: ewc, realign: true, replay_ratio: 0.1}",
    "{name: EProj, type: eproj}",
    "{name: PathWeave, type: pathweave}",
    "{name: PathWeave +Realign, type: pathweave, realign: true, replay_ratio: 0.1}",
    "{name: Merging, type: mera, realign: false}",
    "{name: MERA (1%), type: mera, replay_ratio: 0.01}",
    "{name: MERA (10%), type: mera, replay_ratio: 0.1}",
]
# Merges in place of MERA's 1/i average (issue #11), each without and with realignment (10 %), with
# their published defaults, never tuned here: TIES keeping the top 20 % (Yadav et al. 2023, k = 20,
# λ = 1); DARE-TIES at density 0.5 (mergekit's documented example); LPM with its defaults (ridge 1e-3,
# Grams on 64 rows per stage). No task arithmetic row: with task vectors relative to θ₀ (#17), task
# arithmetic with mean weights is θ₀ + mean(θₖ,vanilla − θ₀) = MERA's merge, the "Merging" row above
# (tests/test_merging_stage_merges.py; only the modality placeholder rows added after stage 1 differ).
MERGES = {
    "TIES": "merge: {method: ties, density: 0.2}",
    "DARE-TIES": "merge: {method: dare_ties, density: 0.5}",
    "LPM": "merge: lpm",
}
METHODS += [
    f"{{name: {name}{suffix}, type: mera, {merge}, realign: {flag}, replay_ratio: 0.1}}"
    for name, merge in MERGES.items()
    for suffix, flag in (("", "false"), (" +Realign", "true"))
]

# The paper's numbers (`hf_mera.evaluation.paper_numbers`): Tables 2 and 4 (mean / std of Backward RG
# over stages, sequential then reverse), Table 5 (the improvement of the mean by realigning) and Table 6
# (training GPU hours, latency per token). "+Realign" rows of Table 5 are the paper's base plus its
# improvement.
PAPER_TABLE2 = {**TABLE_2, **TABLE_4}
PAPER_REALIGN_GAIN = TABLE_5_REALIGN_GAIN
PAPER_TABLE6 = TABLE_6
TABLE2_METHODS = [
    "Fine-Tuning",
    "Replay (1%)",
    "Replay (10%)",
    "EWC",
    "EProj",
    "PathWeave",
    "MERA (1%)",
    "MERA (10%)",
]
ABLATION = ["Fine-Tuning", "Merging", "Fine-Tuning +Realign", "MERA (10%)"]  # Table 4
REALIGN_PAIRS = {  # Table 5: base → with the realigning add-on
    "Fine-Tuning": "Fine-Tuning +Realign",
    "Replay (1%)": "Replay (1%) +Realign",
    "Replay (10%)": "Replay (10%) +Realign",
    "EWC": "EWC +Realign",
    "PathWeave": "PathWeave +Realign",
    "Merging": "MERA (10%)",
    **{name: f"{name} +Realign" for name in MERGES},
}


def run_command(
    config: str,
    order: str,
    seed: int,
    output_dir: Path,
    methods: Sequence[str],
    overrides: Sequence[str] = (),
) -> list[str]:
    """The `hf_mera/run.py` command of one curriculum; `overrides` (`--section.key value ...`) last."""
    return [
        sys.executable, str(REPO / "hf_mera" / "run.py"), config,
        "--order", order, "--seed", str(seed), "--output_dir", str(output_dir),
        "--methods", "[" + ", ".join(methods) + "]", *overrides,
    ]  # fmt: skip


def start_run(
    config: str,
    order: str,
    seed: int,
    output_dir: Path,
    methods: Sequence[str],
    threads: int | None,
    overrides: Sequence[str] = (),
) -> subprocess.Popen:
    """Start (or resume) one curriculum in a subprocess logging to `<output_dir>.log`."""
    command = run_command(config, order, seed, output_dir, methods, overrides)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env["HF_MERA_NUM_THREADS"] = str(threads)
    handle = open(output_dir.with_suffix(".log"), "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env=env)


def run_all(
    config: str, output_dirs: dict, methods: Sequence[str], jobs: int, overrides: Sequence[str] = ()
) -> None:
    """Every (order, seed) run, `jobs` at a time, each with its share of the cores."""
    threads = max(1, len(os.sched_getaffinity(0)) // jobs) if jobs > 1 else None
    pending, running = list(output_dirs.items()), {}
    while pending or running:
        while pending and len(running) < jobs:
            (order, seed), folder = pending.pop(0)
            print(f"{order} seed {seed}: {len(methods)} methods → {folder}", flush=True)
            running[(order, seed)] = (
                start_run(config, order, seed, folder, methods, threads, overrides),
                time.perf_counter(),
            )
        time.sleep(2)
        for key, (proc, start) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[key]
            log = output_dirs[key].with_suffix(".log")
            if proc.returncode:
                for other, _ in running.values():
                    other.terminate()
                raise SystemExit(f"{key[0]} seed {key[1]} failed (exit {proc.returncode}); see {log}")
            print(f"{key[0]} seed {key[1]}: done in {time.perf_counter() - start:.0f} s", flush=True)


REFERENCE = "MERA (10%)"  # every method's paired difference is against it


def mean_spread(values: Sequence[float | None]) -> str:
    """'mean ± half-width of the 95 % t interval over seeds' ('x (1 seed)' for one, '–' for none)."""
    return str(t_interval(values))


def seed_means(loaded, method: str, order: str, seeds: Sequence[int]) -> dict[int, float]:
    """seed → the mean Backward RG over stages of `method` in `order` (seeds without the method left out)."""
    from hf_mera.evaluation.relative_gain import summarize_over_stages

    runs = {seed: loaded[(order, seed)][0].get(method) for seed in seeds}
    return {
        seed: summarize_over_stages(run.backward_relative_gains()).mean
        for seed, run in runs.items()
        if run is not None
    }


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def load(output_dirs: dict[tuple[str, int], Path]):
    """(order, seed) → ({method: RunScores}, {method: efficiency row}, plugin state bytes), and the
    benchmark hash of each seed (the seed draws the embedded benchmark too; both orders of a seed must
    share one)."""
    from hf_mera.evaluation.run_scores import RunScores

    loaded, hashes = {}, {}
    for (order, seed), folder in output_dirs.items():
        results = json.loads((folder / "results.json").read_text())
        if hashes.setdefault(seed, results["benchmark_hash"]) != results["benchmark_hash"]:
            raise SystemExit(f"Seed {seed}'s runs were measured on different benchmarks; see {folder}.")
        runs = {run["method"]: RunScores.from_dict(run) for run in results["runs"]}
        efficiency = {row["method"]: row for row in results.get("efficiency", [])}
        loaded[(order, seed)] = (runs, efficiency, plugin_state_bytes(folder))
    return loaded, hashes


def plugin_state_bytes(folder: Path) -> dict[str, int]:
    """Per method: the bytes of the plugin state (EWC's Fisher and anchor) its last stage carries."""
    sizes = {}
    for stage_json in folder.glob("*/stage-*/stage.json"):
        info = json.loads(stage_json.read_text())
        checkpoint = folder / "checkpoints" / info["checkpoint"]
        while checkpoint.name:  # walk back to the latest instruction tuning with a plugin state
            files = list(checkpoint.glob("plugin-*.safetensors"))
            if files:
                size = sum(f.stat().st_size for f in files)
                sizes[info["method"]] = max(sizes.get(info["method"], 0), size)
                break
            parent = json.loads((checkpoint / "phase.json").read_text()).get("parent")
            checkpoint = folder / "checkpoints" / parent if parent else Path()
    return sizes


def backward_means(loaded, method: str, order: str, seeds: Sequence[int]) -> tuple[list, list]:
    """Per seed: the mean and std over stages of the Backward RG (Table 2's two numbers)."""
    from hf_mera.evaluation.relative_gain import summarize_over_stages

    means, stds = [], []
    for seed in seeds:
        run = loaded[(order, seed)][0].get(method)
        if run is None:
            continue
        mean, std = summarize_over_stages(run.backward_relative_gains())
        means.append(mean)
        stds.append(std)
    return means, stds


def report(loaded, hashes: dict[int, str], orders: Sequence[str], seeds: Sequence[int], config: str) -> str:
    methods = [m for m in dict.fromkeys(name for runs, _, _ in loaded.values() for name in runs)]
    benchmarks = ", ".join(f"seed {seed}: `{hashes[seed]}`" for seed in seeds)
    out = [
        f"Config `{config}`; seeds {', '.join(map(str, seeds))}. The seed draws the embedded benchmark "
        f"as well as the training, so each seed has its own benchmark (content hash {benchmarks}). Every "
        "cell is the mean over seeds ± the half-width of its 95 % confidence interval (Student's t over "
        "seeds); Backward / Forward Relative Gain (RG) in % of the individually trained experts of the "
        "same seed and order.",
    ]

    def bw_row(method: str) -> list[str]:
        row = [method]
        for order in orders:
            means, stds = backward_means(loaded, method, order, seeds)
            row += [mean_spread(means), mean_spread(stds)]
        paper = PAPER_TABLE2.get(method)
        row += (
            [f"{paper[0]:.2f} / {paper[1]:.2f}", f"{paper[2]:.2f} / {paper[3]:.2f}"] if paper else ["–", "–"]
        )
        return row

    header = ["Method"] + [f"{o} {s}" for o in orders for s in ("mean", "std")] + ["paper seq.", "paper rev."]
    out += ["", "#### Table 2: Backward RG over all stages (mean and std over stages)", ""]
    table2 = [m for m in methods if m in TABLE2_METHODS]
    out.append(table(header, [bw_row(m) for m in table2]))
    out += ["", f"#### Paired differences against {REFERENCE}: mean Backward RG, method − {REFERENCE}", ""]
    out.append(
        "Per seed and order the difference of the two methods' mean Backward RG over stages, then its mean "
        "over seeds with the 95 % t interval. **resolved**: the interval excludes 0 (the sign is settled "
        "at this number of seeds); *unresolved*: it does not."
    )
    out.append("")
    rows = []
    for method in methods:
        if method in (REFERENCE, "Experts") or not any(REFERENCE in runs for runs, _, _ in loaded.values()):
            continue
        row = [method]
        for order in orders:
            diff = paired_difference(
                seed_means(loaded, method, order, seeds), seed_means(loaded, REFERENCE, order, seeds)
            )
            verdict = "" if diff.n < 2 else (" **resolved**" if diff.resolved else " *unresolved*")
            row.append(f"{diff}{verdict}")
        rows.append(row)
    out.append(table(["Method"] + [f"{o} Δ vs {REFERENCE}" for o in orders], rows))
    out += ["", "#### Table 4: ablation (merging, realigning on 10 % replay)", ""]
    out.append(table(header, [bw_row(m) for m in ABLATION if m in methods]))

    out += ["", "#### Table 5: the realigning add-on (change of the mean Backward RG; 10 % replay)", ""]
    rows = []
    for base, realigned in REALIGN_PAIRS.items():
        if base not in methods or realigned not in methods:
            continue
        row = [f"{base} → {realigned}"]
        for order in orders:
            gains = []
            for seed in seeds:
                runs = loaded[(order, seed)][0]
                if base in runs and realigned in runs:
                    a = backward_means(loaded, base, order, [seed])[0][0]
                    b = backward_means(loaded, realigned, order, [seed])[0][0]
                    gains.append(b - a)
            row.append(mean_spread(gains))
        paper = PAPER_REALIGN_GAIN.get(base)
        row += [f"+{paper[0]:.2f}", f"+{paper[1]:.2f}"] if paper else ["–", "–"]
        rows.append(row)
    out.append(table(["Method"] + [f"{o} Δ mean" for o in orders] + ["paper seq.", "paper rev."], rows))

    out += ["", "#### Merges (issue #11): mean Backward and Forward RG over all stages", ""]
    rows = []
    for method in ["Merging", "MERA (10%)"] + [f"{n}{s}" for n in MERGES for s in ("", " +Realign")]:
        if method not in methods:
            continue
        row = [method]
        for order in orders:
            bw, fw = [], []
            for seed in seeds:
                run = loaded[(order, seed)][0].get(method)
                if run is None:
                    continue
                bw.append(statistics.mean(run.backward_relative_gains()))
                forward = [v for v in run.forward_relative_gains() if v is not None]
                fw.append(statistics.mean(forward) if forward else None)
            row += [mean_spread(bw), mean_spread(fw)]
        rows.append(row)
    out.append(table(["Method"] + [f"{o} {m}" for o in orders for m in ("Bw RG", "Fw RG")], rows))

    for kind, title in (("backward", "Figure 3: Backward RG"), ("forward", "Figure 4: Forward RG")):
        out += ["", f"#### {title} per stage, averaged over the orders", ""]
        num_stages = max(len(run.order) for runs, _, _ in loaded.values() for run in runs.values())
        rows = []
        for method in methods:
            cells = []
            for stage in range(num_stages):
                per_seed = []
                for seed in seeds:
                    values = []
                    for order in orders:
                        run = loaded[(order, seed)][0].get(method)
                        curve = (
                            run.backward_relative_gains()
                            if kind == "backward"
                            else run.forward_relative_gains()
                        )
                        if stage < len(curve) and curve[stage] is not None:
                            values.append(curve[stage])
                    if len(values) == len(orders):
                        per_seed.append(statistics.mean(values))
                cells.append(mean_spread(per_seed))
            rows.append([method] + cells)
        out.append(table(["Method"] + [f"Stage {i + 1}" for i in range(num_stages)], rows))

    out += ["", "#### Table 6: cost per method (both orders)", ""]
    rows = []
    for method in methods:
        seconds, latency, state = [], [], []
        for _, efficiency, states in loaded.values():
            row = efficiency.get(method) or {}
            seconds.append(row.get("train_wall_seconds"))
            latency.append(row.get("latency_per_token_ms"))
            state.append(states.get(method, 0) / 2**20)
        paper = PAPER_TABLE6.get(method)
        rows.append(
            [method, mean_spread(seconds), mean_spread(latency), mean_spread(state)]
            + ([f"{paper[0]} h", f"{paper[1]} ms"] if paper else ["–", "–"])
        )
    header = ["Method", "train s", "latency ms/token", "plugin state MiB", "paper train", "paper latency"]
    out.append(table(header, rows))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--orders", nargs="+", default=["sequential", "reverse"])
    parser.add_argument(
        "--config",
        default="compare",
        help="Shipped config name or YAML path (compare: the paper's regime, 300 test items per task).",
    )
    parser.add_argument("--output-dir", type=Path, default=REPO / "outputs" / "compare")
    parser.add_argument("--markdown", type=Path, default=None, help="Also write the tables here.")
    parser.add_argument("--only-report", action="store_true", help="Build the tables from finished runs.")
    parser.add_argument(
        "--jobs", type=int, default=1, help="Runs side by side (each gets cores / jobs threads)."
    )
    parser.add_argument(
        "--methods", nargs="+", default=None, help="Only these methods (display names) and the experts."
    )
    args = parser.parse_args(argv)

    methods = METHODS
    if args.methods:
        wanted = {"Experts", *args.methods}
        methods = [m for m in METHODS if m.split(",")[0].removeprefix("{name: ") in wanted]
    output_dirs = {
        (order, seed): args.output_dir / f"{order}-seed{seed}" for seed in args.seeds for order in args.orders
    }
    if not args.only_report:
        run_all(args.config, output_dirs, methods, args.jobs)
    loaded, hashes = load(output_dirs)
    text = report(loaded, hashes, args.orders, args.seeds, args.config)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
