"""Reports of whole runs: `results.json`, a markdown file with the paper's tables, and plots.

Tables mirror the paper: Table 2 (mean / std of Bw Relative Gain over stages, per order), Tables 11 / 12
(raw scores per stage), the per-stage Bw / Fw Relative Gain behind Figures 3 / 4, Table 3 (cross-modal
accuracy after the last stage) and, when given, Table 6 (efficiency). Runs are grouped by
`RunScores.order_name`; figures average the orders of each method, as the paper's figures do.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from ..atomic import atomic_file, atomic_write_text
from .efficiency import EfficiencyRecord, render_efficiency_table
from .relative_gain import StageOne, mean_over_orders, summarize_over_stages
from .run_scores import RunScores


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _fmt_score(value: float | None) -> str:
    # The paper prints accuracies as fractions with 3 decimals and CIDEr with 2; tell them apart by size.
    if value is None:
        return "–"
    return f"{value:.3f}" if abs(value) <= 1.0 else f"{value:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _order_names(runs: Sequence[RunScores]) -> list[str]:
    return list(dict.fromkeys(run.order_name for run in runs))


def _methods(runs: Sequence[RunScores]) -> list[str]:
    return list(dict.fromkeys(run.method for run in runs))


def _index(runs: Sequence[RunScores]) -> dict[tuple[str, str], RunScores]:
    index = {}
    for run in runs:
        key = (run.method, run.order_name)
        if key in index:
            raise ValueError(f"Two runs for method {run.method!r} and order {run.order_name!r}.")
        index[key] = run
    return index


def backward_summary_table(runs: Sequence[RunScores], stage_one: StageOne = "relative_gain") -> str:
    """Table 2: per method and order, mean and sample std of Bw Relative Gain over all stages."""
    index, orders = _index(runs), _order_names(runs)
    header = ["Method"] + [f"{order} {stat}" for order in orders for stat in ("Mean", "Std")]
    rows = []
    for method in _methods(runs):
        row = [method]
        for order in orders:
            run = index.get((method, order))
            if run is None or not run.stages:
                row += ["–", "–"]
                continue
            mean, std = summarize_over_stages(run.backward_relative_gains(stage_one))
            row += [_fmt(mean), _fmt(std)]
        rows.append(row)
    return _table(header, rows)


def raw_scores_tables(runs: Sequence[RunScores]) -> str:
    """Tables 11 / 12: one table per order, experts first, then each method's scores per stage."""
    sections = []
    for order in _order_names(runs):
        group = [run for run in runs if run.order_name == order]
        columns = []
        for run in group:
            for modality in run.order:
                tasks = list(run.expert_scores.get(modality, {}))
                tasks += [t for stage in run.stages for t in stage.get(modality, {}) if t not in tasks]
                columns += [(modality, task) for task in tasks if (modality, task) not in columns]
        header = ["Method", "Stage"] + [f"{modality} / {task}" for modality, task in columns]
        rows = []
        experts = [run.expert_scores for run in group]
        expert_rows = (
            [(None, experts[0])]
            if all(e == experts[0] for e in experts)
            else [(run.method, run.expert_scores) for run in group]
        )
        for method, scores in expert_rows:
            label = "Individually trained experts" + (f" ({method})" if method else "")
            rows.append([label, ""] + [_fmt_score(scores.get(m, {}).get(t)) for m, t in columns])
        for run in group:
            for stage, scores in enumerate(run.stages, start=1):
                rows.append(
                    [run.method if stage == 1 else "", f"Stage {stage}"]
                    + [_fmt_score(scores.get(m, {}).get(t)) for m, t in columns]
                )
        sections.append(f"#### Order: {order}\n\n{_table(header, rows)}")
    return "\n\n".join(sections)


def stagewise_table(runs: Sequence[RunScores], stage_one: StageOne = "relative_gain") -> str:
    """Bw and Fw Relative Gain of every stage (the data of Figures 3 and 4), per method and order."""
    num_stages = max((run.num_stages for run in runs), default=0)
    header = ["Method", "Order", "Metric"] + [f"Stage {i}" for i in range(1, num_stages + 1)]
    rows = []
    for run in runs:
        for metric, values in (
            ("Bw RG", run.backward_relative_gains(stage_one)),
            ("Fw RG", run.forward_relative_gains(stage_one)),
        ):
            cells = [_fmt(v) for v in values] + ["–"] * (num_stages - len(values))
            rows.append([run.method, run.order_name, metric] + cells)
    return _table(header, rows)


def cross_modal_table(runs: Sequence[RunScores]) -> str:
    """Table 3: accuracy (percent) on each cross-modal benchmark after the last stage, per order."""
    index, orders = _index(runs), _order_names(runs)
    benchmarks = list(dict.fromkeys(name for run in runs for name in run.cross_modal))
    if not benchmarks:
        return ""
    header = ["Method"] + [
        f"{order} {name}" if len(benchmarks) > 1 else order for order in orders for name in benchmarks
    ]
    rows = []
    for method in _methods(runs):
        row = [method]
        for order in orders:
            run = index.get((method, order))
            for name in benchmarks:
                value = run.cross_modal.get(name) if run is not None else None
                row.append(_fmt(None if value is None else 100.0 * value))
        rows.append(row)
    return _table(header, rows)


def _curves_by_method(runs: Sequence[RunScores], kind: str, stage_one: StageOne) -> dict[str, list[float]]:
    curves = {}
    for method in _methods(runs):
        per_order = []
        for run in (r for r in runs if r.method == method):
            values = (
                run.backward_relative_gains(stage_one)
                if kind == "backward"
                else run.forward_relative_gains(stage_one)
            )
            per_order.append([math.nan if v is None else v for v in values])
        # Orders still in progress: average the stages every order has reached.
        length = min(len(c) for c in per_order)
        # An order's missing value makes that stage's average NaN (a gap in the plot), not a biased mean.
        curves[method] = mean_over_orders([c[:length] for c in per_order])
    return curves


def plot_relative_gain(
    runs: Sequence[RunScores], kind: str, path: str | os.PathLike, stage_one: StageOne = "relative_gain"
) -> Path:
    """Figure 3 (`kind="backward"`) or Figure 4 (`kind="forward"`): one line per method, orders averaged."""
    if kind not in ("backward", "forward"):
        raise ValueError(f"kind must be 'backward' or 'forward', got {kind!r}.")
    # A bare Figure renders with Agg and touches no pyplot state: safe on headless machines and in notebooks.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    for method, curve in _curves_by_method(runs, kind, stage_one).items():
        axes.plot(range(1, len(curve) + 1), curve, marker="o", label=method)
    axes.set_xlabel("Stage")
    axes.set_ylabel(f"{kind.capitalize()} Relative Gain (%)")
    axes.set_xticks(range(1, max((r.num_stages for r in runs), default=1) + 1))
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    with atomic_file(path) as tmp:  # the temporary name keeps ".png", which savefig reads the format from
        figure.savefig(tmp, dpi=150)
    return Path(path)


def write_report(
    runs: Sequence[RunScores],
    out_dir: str | os.PathLike,
    efficiency: Sequence[EfficiencyRecord] | None = None,
    stage_one: StageOne = "relative_gain",
    title: str = "hf_mera results",
    benchmark_hash: str | None = None,
) -> dict[str, Path]:
    """Write `results.json`, `report.md`, `backward_relative_gain.png` and `forward_relative_gain.png`.

    Args:
        runs (`list[RunScores]`): one per (method, training order).
        out_dir (`str` or `os.PathLike`): created if missing.
        efficiency (`list[EfficiencyRecord]`, *optional*): adds a Table 6-shaped section.
        stage_one (`"relative_gain"` or `"100"`): stage-1 convention, see `backward_relative_gain`.
        title (`str`): heading of the markdown file.
        benchmark_hash (`str`, *optional*): the content hash of the benchmark the scores were measured
            on; written into `results.json` and under the markdown's heading.

    Returns:
        `dict[str, Path]`: the written files by role ("json", "markdown", "backward_plot", "forward_plot").
    """
    if not runs:
        raise ValueError("runs is empty: nothing to report.")
    _index(runs)  # reject duplicates before writing anything
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    summary = {}
    for run in runs:
        bw, fw = run.backward_relative_gains(stage_one), run.forward_relative_gains(stage_one)
        mean, std = summarize_over_stages(bw) if bw else (None, None)
        summary.setdefault(run.method, {})[run.order_name] = {
            "backward_relative_gain": bw,
            "forward_relative_gain": fw,
            "backward_mean": mean,
            "backward_std": None if std is None or math.isnan(std) else std,
        }
    results = {
        "benchmark_hash": benchmark_hash,
        "stage_one": stage_one,
        "std": "sample (n - 1)",
        "runs": [run.to_dict() for run in runs],
        "summary": summary,
        "efficiency": [vars(record) for record in efficiency or []],
    }
    paths = {"json": out / "results.json", "markdown": out / "report.md"}
    atomic_write_text(paths["json"], json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    paths["backward_plot"] = plot_relative_gain(
        runs, "backward", out / "backward_relative_gain.png", stage_one
    )
    paths["forward_plot"] = plot_relative_gain(runs, "forward", out / "forward_relative_gain.png", stage_one)

    sections = [
        f"# {title}",
        *([f"Benchmark content hash: `{benchmark_hash}`."] if benchmark_hash else []),
        "Relative Gains are percentages of the individually trained experts' scores (paper section 5.1); "
        "captioning scores are CIDEr ×100, QA scores accuracies.",
        "## Backward Relative Gain over all stages (Table 2)\n\nMean and sample standard deviation over "
        "stages, stage 1 included.\n\n" + backward_summary_table(runs, stage_one),
        "## Relative Gain per stage (Figures 3 and 4)\n\n" + stagewise_table(runs, stage_one),
        "![Backward Relative Gain](backward_relative_gain.png)\n\n![Forward Relative Gain](forward_relative_gain.png)",
        "## Raw scores per stage (Tables 11 and 12)\n\n" + raw_scores_tables(runs),
    ]
    cross = cross_modal_table(runs)
    if cross:
        sections.append("## Cross-modal accuracy after the last stage (Table 3)\n\n" + cross)
    if efficiency:
        sections.append("## Efficiency (Table 6)\n\n" + render_efficiency_table(efficiency))
    judges = sorted({str(run.metadata["judge"]) for run in runs if "judge" in run.metadata})
    if judges:
        sections.append("QA judged by: " + ", ".join(judges) + ".")
    atomic_write_text(paths["markdown"], "\n\n".join(sections) + "\n")
    return paths


__all__ = [
    "backward_summary_table",
    "cross_modal_table",
    "plot_relative_gain",
    "raw_scores_tables",
    "stagewise_table",
    "write_report",
]
