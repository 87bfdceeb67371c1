"""Sensitivity on the validation split (issue #17): EWC's λ, Replay's ratio and MERA's realignment
budget, each swept around the default the comparison keeps, measured on val and never on test.

    python bench/sensitivity.py [--seeds 0] [--orders sequential] [--config compare]
        [--output-dir outputs/sensitivity] [--markdown FILE] [--only-report] [--jobs N]
        [--ewc-lambdas 1 10 ...] [--replay-ratios 0.01 ...] [--realign-epochs 1 2 ...]
        [extra overrides --section.key value ...]

Each grid point is one method entry; with the experts (Relative Gain needs them) they form one
curriculum per (order, seed), run by `bench/compare_methods.py`'s machinery (`hf_mera/run.py` in a
subprocess into `<output-dir>/<order>-seed<seed>`, phases shared by content address, resumable by
running the command again). Every run is scored on the validation split only
(`--evaluation.split val --evaluation.cross_modal false`, appended after any extra override, and an
extra override of either is refused); the report refuses a run folder whose `run_config.yaml` says
otherwise. The grids (`GRIDS`):

- EWC's λ ∈ {1, 10, 100, 1000, 10000}; the paper's λ = 1 (appendix C.2) is the comparison's.
- Replay's ratio r ∈ {1 %, 5 %, 10 %, 20 %}; the paper's two, 1 % and 10 %, are the comparison's.
- MERA (10 %)'s realignment budget ∈ {1, 4, 8, 16, 32} epochs of its replay set Rᵢ (the entry's
  `realign_epochs`): the paper realigns for 1 epoch, as many as it instruction-tunes (Table 9);
  compare.yaml's default is 32, the instruction tuning's epochs over Dᵢ at this scale (1600 steps × 16
  over 800 rows), and the comparison keeps it. An explicit 32 is the same phase as the default (same
  description, same checkpoint).

The tables: per knob and order, the mean Backward and Forward Relative Gain over stages (val), the mean
over seeds ± the half-width of its 95 % t interval (one seed: the value, marked "1 seed"). Choosing a
value from them is for validation only; the comparison keeps the paper's defaults either way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_methods  # noqa: E402
from compare_methods import REPO, mean_spread, run_all, table  # noqa: E402

# Appended to every run's command, after any extra override: no number here is read on test.
VAL_ONLY = ["--evaluation.split", "val", "--evaluation.cross_modal", "false"]
EXPERTS = "{name: Experts, type: experts}"


@dataclass(frozen=True)
class Knob:
    """One swept hyper-parameter: its grid, the values the comparison keeps (`defaults`, with why) and
    the method entry of one value."""

    title: str
    flag: str  # the command-line option that replaces the grid
    grid: tuple[float, ...]
    defaults: dict[float, str]
    label: Callable[[float], str]  # the value as the table shows it
    name: Callable[[float], str]  # the method's display name
    entry: str  # the method's YAML entry, formatted with name= and value=

    def spec(self, value: float) -> str:
        return self.entry.format(name=self.name(value), value=value)


GRIDS = {
    "ewc_lambda": Knob(
        title="EWC's λ",
        flag="--ewc-lambdas",
        grid=(1.0, 10.0, 100.0, 1000.0, 10000.0),
        defaults={1.0: "paper (C.2), comparison"},
        label=lambda v: f"{v:g}",
        name=lambda v: f"EWC (λ {v:g})",
        entry="{{name: {name}, type: ewc, plugins: [{{name: ewc, lambda_: {value}}}]}}",
    ),
    "replay_ratio": Knob(
        title="Replay's ratio r",
        flag="--replay-ratios",
        grid=(0.01, 0.05, 0.1, 0.2),
        defaults={0.01: "paper, comparison", 0.1: "paper, comparison"},
        label=lambda v: f"{v * 100:g} %",
        name=lambda v: f"Replay ({v * 100:g}%)",
        entry="{{name: {name}, type: replay, replay_ratio: {value}}}",
    ),
    "realign_epochs": Knob(
        title="MERA (10 %)'s realignment budget (epochs of its replay set Rᵢ)",
        flag="--realign-epochs",
        grid=(1.0, 4.0, 8.0, 16.0, 32.0),
        defaults={1.0: "paper (Table 9)", 32.0: "compare.yaml, comparison"},
        label=lambda v: f"{v:g}",
        name=lambda v: f"MERA (10%) realign {v:g} ep",
        entry="{{name: {name}, type: mera, replay_ratio: 0.1, realign_epochs: {value}}}",
    ),
}


def grid_methods(grids: dict[str, Sequence[float]]) -> list[str]:
    """The experts, then one method entry per (knob, value) of `grids` (knob → values)."""
    return [EXPERTS] + [GRIDS[knob].spec(value) for knob, values in grids.items() for value in values]


def val_overrides(extra: Sequence[str]) -> list[str]:
    """`extra` (the user's `--section.key value ...`), then the val-only evaluation, which they may not name."""
    for item in extra:
        key = item.split("=", 1)[0]
        if key in ("--evaluation.split", "--evaluation.cross_modal"):
            raise SystemExit(f"{key}: the sensitivity runs are scored on val only; drop this override.")
    return [*extra, *VAL_ONLY]


def check_val(folder: Path) -> None:
    """Refuse a run folder that was not scored on val only (e.g. the comparison's, on test), or whose
    run wrote raw scores only (no Relative Gain: an expert scored 0)."""
    import yaml

    results = json.loads((folder / "results.json").read_text())
    if results.get("relative_gain", "") is None:
        zero = sorted(
            f"{stage_modality}/{task}"
            for record in results["records"]
            if record.get("reference")
            for stage in record["stages"]
            for stage_modality, tasks in stage["scores"].items()
            for task, score in tasks.items()
            if score == 0
        )
        raise SystemExit(
            f"{folder / 'results.json'}: raw scores only, no Relative Gain (the experts scored 0 on {zero}); "
            "give the stages more training."
        )

    config = yaml.safe_load((folder / "run_config.yaml").read_text())
    evaluation = config.get("evaluation", {})
    if evaluation.get("split") != "val" or evaluation.get("cross_modal"):
        raise SystemExit(
            f"{folder / 'run_config.yaml'}: evaluation.split {evaluation.get('split')!r}, cross_modal "
            f"{evaluation.get('cross_modal')!r}: the sensitivity table reads val-only runs."
        )


def gains(loaded, method: str, order: str, seeds: Sequence[int]) -> tuple[list, list]:
    """Per seed with `method`: its mean Backward RG over stages (Table 2's mean) and its mean Forward RG
    over the stages that have one."""
    from hf_mera.evaluation.relative_gain import summarize_over_stages

    backward, forward = [], []
    for seed in seeds:
        run = loaded[(order, seed)][0].get(method)
        if run is None:
            continue
        backward.append(summarize_over_stages(run.backward_relative_gains()).mean)
        values = [v for v in run.forward_relative_gains() if v is not None]
        forward.append(statistics.mean(values) if values else None)
    return backward, forward


def report(
    loaded,
    hashes: dict[int, str],
    grids: dict[str, Sequence[float]],
    orders: Sequence[str],
    seeds: Sequence[int],
    config: str,
    wall: dict | None = None,
) -> str:
    benchmarks = ", ".join(f"seed {seed}: `{hashes[seed]}`" for seed in seeds)
    out = [
        f"Config `{config}`; orders {', '.join(orders)}; seeds {', '.join(map(str, seeds))} (benchmark "
        f"content hash {benchmarks}). **Measured on the validation split** (`--evaluation.split val`, no "
        "cross-modal set): no number here was read on test. Relative Gain (RG) in % of the experts of the "
        "same seed and order on val; each cell the mean over seeds ± the half-width of its 95 % t interval "
        "(one seed: the single value). The comparison (`bench/compare_methods.py`) keeps the paper's "
        "defaults (marked) whatever these tables show.",
    ]
    for knob, values in grids.items():
        spec = GRIDS[knob]
        out += ["", f"#### {spec.title}", ""]
        rows = []
        for value in values:
            row = [spec.label(value), spec.defaults.get(value, "")]
            for order in orders:
                backward, forward = gains(loaded, spec.name(value), order, seeds)
                row += [mean_spread(backward), mean_spread(forward)]
            rows.append(row)
        header = ["value", "default"] + [f"{o} {k} RG (val)" for o in orders for k in ("Backward", "Forward")]
        out.append(table(header, rows))
    if wall:
        cost = ", ".join(f"{o} seed {s}: {seconds:.0f} s" for (o, s), seconds in wall.items())
        out += ["", f"Wall time of each run (phases reused from an earlier run cost nothing): {cost}."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--orders", nargs="+", default=["sequential"])
    parser.add_argument("--config", default="compare", help="Shipped config name or YAML path.")
    parser.add_argument("--output-dir", type=Path, default=REPO / "outputs" / "sensitivity")
    parser.add_argument("--markdown", type=Path, default=None, help="Also write the tables here.")
    parser.add_argument("--only-report", action="store_true", help="Build the tables from finished runs.")
    parser.add_argument(
        "--jobs", type=int, default=1, help="Runs side by side (each gets cores / jobs threads)."
    )
    for knob, spec in GRIDS.items():
        parser.add_argument(
            spec.flag,
            dest=knob,
            type=float,
            nargs="*",
            default=list(spec.grid),
            help=f"{spec.title}: the grid (default {list(spec.grid)}; none: skip it).".replace("%", "%%"),
        )
    args, extra = parser.parse_known_args(argv)
    grids = {knob: getattr(args, knob) for knob in GRIDS if getattr(args, knob)}
    if not grids:
        raise SystemExit("Every grid is empty: nothing to measure.")
    overrides = val_overrides(extra)
    output_dirs = {
        (order, seed): args.output_dir / f"{order}-seed{seed}" for seed in args.seeds for order in args.orders
    }
    if not args.only_report:
        run_all(args.config, output_dirs, grid_methods(grids), args.jobs, overrides)
    for folder in output_dirs.values():
        check_val(folder)
    loaded, hashes = compare_methods.load(output_dirs)
    wall = {
        key: json.loads((folder / "results.json").read_text())
        .get("wall_time", {})
        .get("seconds", {})
        .get("total")
        for key, folder in output_dirs.items()
    }
    wall = {key: seconds for key, seconds in wall.items() if seconds is not None}
    text = report(loaded, hashes, grids, args.orders, args.seeds, args.config, wall)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
