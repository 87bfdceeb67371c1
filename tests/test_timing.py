"""The run's wall time per phase type (issue #20): nested phases count once, the rows sum to the run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from trainers import timing
from trainers.timing import OTHER, TOTAL, PhaseClock, render_phase_table

REPO = Path(__file__).resolve().parent.parent


class FakeTime:
    """`time.perf_counter` that only moves when told to."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nested_phases_count_once_and_the_rows_sum_to_the_run(monkeypatch):
    clock_time = FakeTime()
    monkeypatch.setattr(timing.time, "perf_counter", clock_time)
    clock = PhaseClock()
    clock_time.now += 1  # before any phase: "other"
    with clock.phase("instruction_tuning"):
        clock_time.now += 2
        with clock.phase("feature_encoding"):
            clock_time.now += 3
        clock_time.now += 4
    with clock.phase("evaluation"):
        with clock.phase("feature_encoding"):
            clock_time.now += 5
        clock_time.now += 6
    clock_time.now += 0.5
    rows = clock.table()
    assert rows == {
        "feature_encoding": 8,
        "instruction_tuning": 6,
        "evaluation": 6,
        OTHER: 1.5,
        TOTAL: 21.5,
    }
    assert sum(v for k, v in rows.items() if k != TOTAL) == rows[TOTAL]
    table = render_phase_table(rows)
    assert "| feature_encoding | 8.0 | 37.2 % |" in table and "| **total** | **21.5** | 100 % |" in table


def test_a_phase_that_raises_is_still_counted(monkeypatch):
    clock_time = FakeTime()
    monkeypatch.setattr(timing.time, "perf_counter", clock_time)
    clock = PhaseClock()
    with pytest.raises(RuntimeError), clock.phase("merge"):
        clock_time.now += 2
        raise RuntimeError("boom")
    with clock.phase("realign"):
        clock_time.now += 1
    assert clock.table() == {"merge": 2, "realign": 1, OTHER: 0, TOTAL: 3}


@pytest.mark.slow
def test_a_run_reports_its_wall_time_per_phase_type(tmp_path):
    from test_run_e2e import run_in_process, tiny_overrides

    out = tmp_path / "run"
    methods = ["--methods", "[{name: Experts, type: experts}, {name: MERA, type: mera}]"]
    run_in_process(tiny_overrides(tmp_path / "bench", out) + methods)
    rows = json.loads((out / "results.json").read_text())["wall_time"]["seconds"]
    for kind in (
        "data",
        "backbone",
        "add_modality",
        "feature_encoding",
        "connector_pretrain",
        "instruction_tuning",
        "merge",
        "realign",
        "evaluation",
        "publishing",
        OTHER,
    ):
        assert rows.get(kind, -1) >= 0, kind
    assert sum(v for k, v in rows.items() if k != TOTAL) == pytest.approx(rows[TOTAL], rel=1e-9)
    assert rows[OTHER] < rows[TOTAL]
    if (out / "report.md").exists():  # tiny runs whose experts score 0 write the raw scores only
        assert "## Wall time per phase type" in (out / "report.md").read_text()

    # The refactor check (bench/compare_outputs.py) ignores it, as every wall-clock field.
    spec = importlib.util.spec_from_file_location("compare_outputs", REPO / "bench" / "compare_outputs.py")
    compare_outputs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare_outputs)
    assert "wall_time" not in compare_outputs.without_timing(json.loads((out / "results.json").read_text()))
