"""Reports (results.json, markdown tables, plots) and efficiency records."""

import json
import time

import pytest

from hf_mera.evaluation import (
    EfficiencyRecord,
    RunScores,
    backward_summary_table,
    cross_modal_table,
    measure,
    raw_scores_tables,
    render_efficiency_table,
    stagewise_table,
    summarize_over_stages,
    write_report,
)
from hf_mera.evaluation.efficiency import format_bytes, format_duration

EXPERTS = {"image": {"caption": 100.0, "qa": 0.5}, "audio": {"caption": 50.0, "qa": 0.8}}


def _run(method, order, stages, cross=None):
    return RunScores(
        method=method,
        order=order,
        order_name="sequential" if order[0] == "image" else "reverse",
        stages=stages,
        expert_scores=EXPERTS,
        cross_modal=cross or {},
        metadata={"judge": "exact_match"},
    )


RUNS = [
    _run(
        "Fine-Tuning",
        ["image", "audio"],
        [
            {"image": {"caption": 100.0, "qa": 0.5}},
            {"image": {"caption": 40.0, "qa": 0.2}, "audio": {"caption": 55.0, "qa": 0.8}},
        ],
        {"MCUB-4": 0.385},
    ),
    _run(
        "Fine-Tuning",
        ["audio", "image"],
        [
            {"audio": {"caption": 50.0, "qa": 0.8}},
            {"audio": {"caption": 10.0, "qa": 0.4}, "image": {"caption": 90.0}},
        ],
        {"MCUB-4": 0.3614},
    ),
    _run(
        "MERA (10%)",
        ["image", "audio"],
        [
            {"image": {"caption": 100.0, "qa": 0.5}},
            {"image": {"caption": 98.0, "qa": 0.49}, "audio": {"caption": 50.0, "qa": 0.7}},
        ],
        {"MCUB-4": 0.727},
    ),
]


def test_backward_summary_table_is_table_2_shaped():
    table = backward_summary_table(RUNS)
    lines = table.splitlines()
    assert lines[0] == "| Method | sequential Mean | sequential Std | reverse Mean | reverse Std |"
    # sequential Bw RG [100, 40]: mean 70, sample std sqrt(2 · 30²) = 42.43; reverse [100, 35]
    assert summarize_over_stages(RUNS[0].backward_relative_gains()) == pytest.approx(
        (70.0, 42.4264), abs=1e-4
    )
    assert lines[2] == "| Fine-Tuning | 70.00 | 42.43 | 67.50 | 45.96 |"
    assert lines[3].startswith("| MERA (10%) | 99.00 | 1.41 | – | – |")


def test_raw_scores_tables_show_experts_then_stages_per_order():
    text = raw_scores_tables(RUNS)
    assert "#### Order: sequential" in text and "#### Order: reverse" in text
    assert "| Method | Stage | image / caption | image / qa | audio / caption | audio / qa |" in text
    assert "| Individually trained experts |  | 100.00 | 0.500 | 50.00 | 0.800 |" in text
    assert "| Fine-Tuning | Stage 1 | 100.00 | 0.500 | – | – |" in text
    assert "|  | Stage 2 | 40.00 | 0.200 | 55.00 | 0.800 |" in text
    # reverse order: the image QA score is missing at stage 2 and shown as "-"
    assert "|  | Stage 2 | 10.00 | 0.400 | 90.00 | – |" in text


def test_stagewise_table_marks_undefined_forward_gain():
    text = stagewise_table(RUNS)
    assert "| Fine-Tuning | sequential | Bw RG | 100.00 | 40.00 |" in text
    assert "| Fine-Tuning | sequential | Fw RG | 100.00 | 105.00 |" in text
    assert "| Fine-Tuning | reverse | Fw RG | 100.00 | – |" in text  # image QA missing at stage 2


def test_cross_modal_table_in_percent():
    text = cross_modal_table(RUNS)
    assert "| Method | sequential | reverse |" in text
    assert "| Fine-Tuning | 38.50 | 36.14 |" in text
    assert "| MERA (10%) | 72.70 | – |" in text
    assert cross_modal_table([RunScores(method="x", order=["image"])]) == ""


def test_write_report_writes_json_markdown_and_plots(tmp_path):
    records = [EfficiencyRecord("MERA (10%)", 40_190_000_000, 61 * 3600, 19_010_000_000, 34.0)]
    paths = write_report(RUNS, tmp_path / "report", efficiency=records, benchmark_hash="0123456789ab")
    assert set(paths) == {"json", "markdown", "backward_plot", "forward_plot"}
    for path in paths.values():
        assert path.exists() and path.stat().st_size > 0
    assert paths["backward_plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    results = json.loads(paths["json"].read_text())
    assert results["std"] == "sample (n - 1)" and results["benchmark_hash"] == "0123456789ab"
    assert [RunScores.from_dict(r) for r in results["runs"]] == RUNS
    summary = results["summary"]["Fine-Tuning"]["sequential"]
    assert summary["backward_relative_gain"] == pytest.approx([100.0, 40.0])
    assert summary["backward_mean"] == pytest.approx(70.0)
    assert summary["forward_relative_gain"] == pytest.approx([100.0, 105.0])
    assert results["summary"]["Fine-Tuning"]["reverse"]["forward_relative_gain"][1] is None
    assert results["efficiency"][0]["method"] == "MERA (10%)"

    markdown = paths["markdown"].read_text()
    for heading in ("(Table 2)", "(Figures 3 and 4)", "(Tables 11 and 12)", "(Table 3)", "(Table 6)"):
        assert heading in markdown
    assert "![Backward Relative Gain](backward_relative_gain.png)" in markdown
    assert "QA judged by: exact_match." in markdown
    assert "Benchmark content hash: `0123456789ab`." in markdown.splitlines()[2]


def test_write_report_rejects_empty_and_duplicate_runs(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        write_report([], tmp_path)
    with pytest.raises(ValueError, match="Two runs for method 'Fine-Tuning' and order 'sequential'"):
        write_report([RUNS[0], RUNS[0]], tmp_path)
    assert not (tmp_path / "results.json").exists()


def test_efficiency_table_is_table_6_shaped():
    table = render_efficiency_table(
        [
            EfficiencyRecord("Fine-Tuning", 40_190_000_000, 53 * 3600, 19_010_000_000, 34.0),
            EfficiencyRecord("Tiny"),
        ]
    )
    lines = table.splitlines()
    assert lines[0].startswith("| Method | Training peak memory | Training time |")
    assert lines[2] == "| Fine-Tuning | 37.43 GiB | 53.0 h | 17.70 GiB | 34.0 ms |"
    assert lines[3] == "| Tiny | – | – | – | – |"


@pytest.mark.parametrize(
    ("value", "expected"), [(512, "512 B"), (3 * 1024**2, "3.00 MiB"), (1536, "1.50 KiB"), (None, "–")]
)
def test_format_bytes(value, expected):
    assert format_bytes(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(5.0, "5.0 s"), (90.0, "1.5 min"), (7200.0, "2.0 h"), (None, "–")]
)
def test_format_duration(value, expected):
    assert format_duration(value) == expected


def test_measure_records_time_and_peak_memory():
    with measure() as rss:
        time.sleep(0.02)
    assert (
        rss.wall_seconds >= 0.02 and rss.memory_source == "ru_maxrss" and rss.peak_memory_bytes > 10 * 1024**2
    )

    with measure(cpu_memory="tracemalloc") as traced:
        block = bytearray(8 * 1024**2)
        del block
    assert traced.memory_source == "tracemalloc"
    assert traced.peak_memory_bytes >= 8 * 1024**2

    with pytest.raises(ValueError, match="cpu_memory"):
        with measure(cpu_memory="psutil"):
            pass
