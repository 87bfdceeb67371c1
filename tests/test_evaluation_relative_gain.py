"""Relative Gain metrics (paper section 5.1) and the `RunScores` container."""

import math

import pytest

from hf_mera.evaluation import (
    RunScores,
    backward_relative_gain,
    forward_relative_gain,
    mean_over_orders,
    relative_gain,
    summarize_over_stages,
)

ORDER = ["image", "audio", "video"]
EXPERTS = {
    "image": {"caption": 100.0, "qa": 0.5},
    "audio": {"caption": 50.0, "qa": 0.8},
    "video": {"caption": 80.0, "qa": 0.4},
}
STAGES = [
    {"image": {"caption": 90.0, "qa": 0.5}},
    {"image": {"caption": 50.0, "qa": 0.25}, "audio": {"caption": 60.0, "qa": 0.8}},
    {
        "image": {"caption": 100.0, "qa": 0.5},
        "audio": {"caption": 25.0, "qa": 0.4},
        "video": {"caption": 40.0, "qa": 0.4},
    },
]


def test_relative_gain_is_mean_ratio_in_percent():
    # (90/100 + 0.5/0.5) / 2 = 0.95
    assert relative_gain({"caption": 90.0, "qa": 0.5}, {"caption": 100.0, "qa": 0.5}) == pytest.approx(95.0)
    # extra tasks in scores are ignored: K is the expert's task count
    assert relative_gain({"caption": 50.0, "extra": 1.0}, {"caption": 100.0}) == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("scores", "experts", "message"),
    [
        ({"caption": 1.0}, {}, "empty"),
        ({"caption": 1.0}, {"caption": 1.0, "qa": 0.5}, "lacks task 'qa'"),
        ({"caption": 1.0}, {"caption": 0.0}, r"expert_scores\['caption'\] is 0"),
    ],
)
def test_relative_gain_rejects_bad_input(scores, experts, message):
    with pytest.raises(ValueError, match=message):
        relative_gain(scores, experts)


def test_backward_relative_gain_averages_earlier_modalities_only():
    # stage 2: only image counts: (50/100 + 0.25/0.5)/2 = 50
    assert backward_relative_gain(STAGES[1], EXPERTS, ORDER, 2) == pytest.approx(50.0)
    # stage 3: image 100, audio (25/50 + 0.4/0.8)/2 = 50 → 75; video (new) is ignored
    assert backward_relative_gain(STAGES[2], EXPERTS, ORDER, 3) == pytest.approx(75.0)


def test_backward_relative_gain_stage_one_conventions():
    assert backward_relative_gain(STAGES[0], EXPERTS, ORDER, 1) == pytest.approx(95.0)
    assert backward_relative_gain(STAGES[0], EXPERTS, ORDER, 1, stage_one="100") == 100.0


def test_forward_relative_gain_is_the_new_modalitys_gain():
    assert forward_relative_gain(STAGES[1], EXPERTS, ORDER, 2) == pytest.approx(110.0)  # (1.2 + 1.0)/2
    assert forward_relative_gain(STAGES[2], EXPERTS, ORDER, 3) == pytest.approx(75.0)  # (0.5 + 1.0)/2
    assert forward_relative_gain(STAGES[0], EXPERTS, ORDER, 1) == pytest.approx(95.0)
    assert forward_relative_gain(STAGES[0], EXPERTS, ORDER, 1, stage_one="100") == 100.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: backward_relative_gain(STAGES[1], EXPERTS, ORDER, 0), "stage must be in 1..3"),
        (lambda: backward_relative_gain(STAGES[1], EXPERTS, ORDER, 4), "stage must be in 1..3"),
        (lambda: backward_relative_gain(STAGES[0], EXPERTS, ORDER, 1, stage_one="one"), "stage_one"),
        (lambda: forward_relative_gain(STAGES[0], EXPERTS, ORDER, 1, stage_one="one"), "stage_one"),
        (lambda: backward_relative_gain({"audio": {}}, EXPERTS, ORDER, 2), "no scores for modality 'image'"),
        (lambda: forward_relative_gain(STAGES[1], {"image": {"c": 1.0}}, ORDER, 2), "no modality 'audio'"),
    ],
)
def test_metric_errors_name_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_summarize_over_stages_uses_sample_std():
    mean, std = summarize_over_stages([100.0, 50.0, 75.0])
    assert mean == pytest.approx(75.0)
    assert std == pytest.approx(25.0)  # sqrt((625 + 625 + 0) / 2)
    assert summarize_over_stages([100.0, 50.0, 75.0], ddof=0).std == pytest.approx(math.sqrt(1250 / 3))
    single = summarize_over_stages([80.0])
    assert single.mean == 80.0 and math.isnan(single.std)
    with pytest.raises(ValueError, match="empty"):
        summarize_over_stages([])


def test_mean_over_orders():
    assert mean_over_orders([[100.0, 80.0], [100.0, 60.0]]) == [100.0, 70.0]
    with pytest.raises(ValueError, match="different numbers of stages"):
        mean_over_orders([[1.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match="empty"):
        mean_over_orders([])


def _run(**kwargs):
    options = dict(method="MERA", order=ORDER, stages=STAGES, expert_scores=EXPERTS, order_name="test")
    options.update(kwargs)
    return RunScores(**options)


def test_run_scores_metrics_per_stage():
    run = _run()
    assert run.backward_relative_gains() == pytest.approx([95.0, 50.0, 75.0])
    assert run.forward_relative_gains() == pytest.approx([95.0, 110.0, 75.0])
    assert run.forward_relative_gains(stage_one="100")[0] == 100.0
    assert run.num_stages == 3


def test_run_scores_json_round_trip(tmp_path):
    run = _run(cross_modal={"MCUB-4": 0.7213}, metadata={"judge": "exact_match", "replay": 0.1})
    path = tmp_path / "run.json"
    run.to_json(path)
    loaded = RunScores.from_json(path)
    assert loaded == run
    assert RunScores.from_dict(run.to_dict()) == run
    assert _run(order_name=None).order_name == "image → audio → video"


def test_run_scores_record_builds_stages_incrementally():
    run = RunScores(method="FT", order=ORDER, expert_scores=EXPERTS)
    run.record(1, "image", "caption", 90.0)
    run.record(1, "image", "qa", 0.5)
    run.record(2, "image", "caption", 50.0)
    assert run.stages == [{"image": {"caption": 90.0, "qa": 0.5}}, {"image": {"caption": 50.0}}]
    assert run.has_gain(1, "image") and not run.has_gain(2, "image") and not run.has_gain(3, "image")
    assert run.forward_relative_gains() == [pytest.approx(95.0), None]
    with pytest.raises(ValueError, match="stage 4 recorded before stage 3"):
        RunScores(method="FT", order=ORDER + ["x"], stages=STAGES[:2]).record(4, "x", "qa", 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": ""}, "method"),
        ({"order": []}, "order"),
        ({"order": "image"}, "order"),
        ({"order": ["image", "image", "audio"]}, "repeats"),
        ({"order": ["image"]}, "stages has 3 entries"),
        ({"stages": [{"image": {"caption": "high"}}]}, r"stages\[0\]\['image'\]\['caption'\]"),
        ({"stages": [{"image": 1.0}]}, r"stages\[0\]\['image'\]"),
        ({"expert_scores": {"image": {"qa": True}}}, r"expert_scores\['image'\]\['qa'\]"),
        ({"cross_modal": {"MCUB-4": "0.7"}}, "cross_modal"),
    ],
)
def test_run_scores_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _run(**kwargs)


def test_run_scores_from_dict_rejects_unknown_fields():
    data = _run().to_dict() | {"seed": 1}
    with pytest.raises(ValueError, match="seed"):
        RunScores.from_dict(data)
