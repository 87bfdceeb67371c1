"""Run every method of a curriculum and report: the body of `hf_mera/run.py`."""

from __future__ import annotations

import gc
import json
import logging
from dataclasses import asdict
from pathlib import Path

import yaml

from hf_mera.atomic import atomic_write_json, atomic_write_text
from hf_mera.continual.curriculum import PAPER_ORDERS, RunConfig

from .methods import build_method
from .records import MethodRecord
from .timing import PhaseClock, render_phase_table
from .workspace import Workspace

logger = logging.getLogger(__name__)


def _order_name(order: list[str]) -> str:
    return next((name for name, modalities in PAPER_ORDERS.items() if modalities == order), " → ".join(order))


def _expert_scores(records: list[MethodRecord]) -> dict[str, dict[str, float]]:
    """S_sup per modality and task, from the run's reference method, the experts (empty if none)."""
    for record in records:
        if record.reference:
            return {stage.modality: stage.scores[stage.modality] for stage in record.stages}
    return {}


def to_run_scores(
    record: MethodRecord, expert_scores: dict, run: RunConfig, benchmark_hash: str | None = None
):
    from hf_mera.evaluation import RunScores

    return RunScores(
        method=record.name,
        order=record.order,
        stages=[stage.scores for stage in record.stages],
        expert_scores=expert_scores,
        order_name=_order_name(record.order),
        cross_modal={"cross-modal": record.cross_modal_accuracy}
        if record.cross_modal_accuracy is not None
        else {},
        metadata={
            "judge": run.evaluation.judge,
            "seed": run.seed,
            "benchmark_hash": benchmark_hash,
            "checkpoints": [stage.checkpoint for stage in record.stages],
            "train_seconds": record.train_seconds,
        },
    )


def report_wall_time(clock: PhaseClock, results_json: Path, report_md: Path | None) -> dict[str, float]:
    """The run's wall time per phase type (`trainers.timing`), printed, added to `results.json` under
    `wall_time` (a key `bench/compare_outputs.py` ignores, as every wall-clock field) and to the report."""
    rows = clock.table()
    table = render_phase_table(rows)
    print("\nWhere this run's wall time went (phases reused from an earlier run cost nothing here)\n")
    print(table)
    results = json.loads(Path(results_json).read_text())
    results["wall_time"] = {"seconds": rows}
    atomic_write_text(results_json, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    if report_md is not None:
        with open(report_md, "a", encoding="utf-8") as report:
            report.write(f"\n## Wall time per phase type (this run)\n\n{table}\n")
    return rows


def run_curriculum(run: RunConfig, progress: bool = True) -> dict:
    """Train and evaluate every method of `run`; write results.json, report.md and the plots.

    Returns the `write_report` paths (empty on non-main processes).
    """
    from hf_mera.evaluation import (
        EfficiencyRecord,
        backward_summary_table,
        cross_modal_table,
        stagewise_table,
        write_report,
    )

    from .validation import check_run

    check_run(run)  # a misnamed method type, backbone or data source fails before the data are built
    workspace = Workspace(run, progress=progress)
    # What is alive now (libraries, the data, the workspace) lives for the whole run. Trainer runs a
    # full gc.collect() at the start of every train() (accelerate's free_memory), which otherwise
    # walks all of it each time: about 0.3 s of CPU per phase here. Frozen objects are skipped.
    gc.freeze()
    output_dir = Path(run.output_dir)
    if workspace.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output_dir / "run_config.yaml", yaml.safe_dump(asdict(run), sort_keys=False))
    records = []
    for method in run.methods:
        logger.info("=== method %s (%s) ===", method.name, method.type)
        records.append(build_method(workspace, method).train())
    if not workspace.is_main:
        workspace.barrier()
        return {}

    experts = _expert_scores(records)
    continual = [r for r in records if not r.reference]
    zero = [f"{m}/{t}" for m, tasks in experts.items() for t, score in tasks.items() if score == 0]
    if not experts or not continual or zero:
        # Relative Gains need the experts (S_sup, non-zero) and a continual method: keep the raw scores.
        why = (
            f"the experts scored 0 on {zero}" if zero else "it needs an 'experts' method and a continual one"
        )
        results = {
            "benchmark_hash": workspace.data.benchmark_hash,
            "records": [asdict(r) for r in records],
            "relative_gain": None,
        }
        path = atomic_write_json(output_dir / "results.json", results)
        print(f"Raw scores written to {path}; no Relative Gain because {why}.")
        for record in records:
            for stage in record.stages:
                print(f"{record.name} stage {stage.index} ({stage.modality}): {json.dumps(stage.scores)}")
        report_wall_time(workspace.clock, path, None)
        workspace.barrier()
        return {"json": path}

    benchmark_hash = workspace.data.benchmark_hash
    runs = [to_run_scores(record, experts, run, benchmark_hash) for record in continual]
    efficiency = [
        EfficiencyRecord(
            method=r.name,
            train_peak_memory_bytes=r.peak_memory_bytes,
            train_wall_seconds=r.train_seconds,
            infer_peak_memory_bytes=r.infer_peak_memory_bytes,
            latency_per_token_ms=r.latency_per_token_ms,
        )
        for r in records
    ]
    with workspace.clock.phase("publishing"):
        paths = write_report(
            runs,
            output_dir,
            efficiency=efficiency,
            title=f"hf_mera: {output_dir.name}",
            benchmark_hash=benchmark_hash,
        )
        source = next((r.memory_source for r in records if r.memory_source), None)
        if source == "ru_maxrss":
            # On CPU the only peak available is the process's (it cannot be reset): say so beside Table 6.
            with open(paths["markdown"], "a", encoding="utf-8") as report:
                report.write(
                    "\nOn CPU, peak memory is the process's peak resident set size when the phase ended "
                    "(`ru_maxrss`, an upper bound); training time sums every phase of the method's "
                    "curriculum, phases shared with another method included.\n"
                )
    print("\nScores and Relative Gains per stage (Relative Gain in % of the individually trained experts)\n")
    print(stagewise_table(runs))
    print("\nBackward Relative Gain over stages (paper Table 2)\n")
    print(backward_summary_table(runs))
    cross = cross_modal_table(runs)
    if cross:
        print("\nCross-modal accuracy after the last stage (paper Table 3)\n")
        print(cross)
    print(f"\nBenchmark content hash: {benchmark_hash}")
    print(f"Wrote {', '.join(str(p) for p in paths.values())}")
    report_wall_time(workspace.clock, paths["json"], paths["markdown"])
    workspace.barrier()
    return paths


__all__ = ["run_curriculum", "to_run_scores"]
