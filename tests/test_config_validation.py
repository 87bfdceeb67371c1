"""Bad configs fail when the YAML is read (or, for names registered in trainers/, before any data is
built), each with a ValueError naming the dotted field, the value and what is allowed (#23)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from hf_mera.continual.curriculum import RunConfig, load_run_config, shipped_config
from hf_mera.continual.schema import allowed_range, parse_overrides

QUICKSTART = yaml.safe_load(shipped_config("quickstart").read_text())

# (override, the field the error must name, the value it must show, what it must say is allowed)
BAD_OVERRIDES = [
    (["--training.realign.learning_rate", "-1e-3"], "training.realign.learning_rate", "-0.001", "> 0"),
    (["--training.connector_pretrain.learning_rate", "0"], "training.connector_pretrain.learning_rate", "0", "> 0"),
    (["--training.instruction_tuning.connector_learning_rate", "-1"], "connector_learning_rate", "-1", "> 0"),
    (["--training.connector_pretrain.per_device_train_batch_size", "0"], "per_device_train_batch_size", "0", ">= 1"),
    (["--training.realign.num_train_epochs", "-2"], "training.realign.num_train_epochs", "-2", ">= 0"),
    (["--training.realign.max_steps", "-5"], "training.realign.max_steps", "-5", ">= -1"),
    (["--training.realign.warmup_ratio", "1.5"], "training.realign.warmup_ratio", "1.5", "< 1"),
    (["--training.realign.gradient_accumulation_steps", "0"], "gradient_accumulation_steps", "0", ">= 1"),
    (["--training.instruction_tuning.lora_r", "0"], "training.instruction_tuning.lora_r", "0", ">= 1"),
    (["--training.realign.lr_scheduler_type", "cosinus"], "training.realign.lr_scheduler_type", "cosinus", "cosine"),
    (["--model.backbone.hidden_size", "0"], "model.backbone.hidden_size", "0", ">= 1"),
    (["--model.backbone.num_heads", "3"], "model.backbone.hidden_size", "128", "multiple of num_heads"),
    (["--model.backbone.dtype", "float8"], "model.backbone.dtype", "float8", "bfloat16"),
    (["--model.backbone.text_pretrain_learning_rate", ".nan"], "text_pretrain_learning_rate", "nan", "finite"),
    (["--model.modalities.image.encoder_type", "clipp"], "model.modalities.image.encoder_type", "clipp", "efficientnet_lite0"),
    (["--model.modalities.image.connector_type", "mlp3"], "model.modalities.image.connector_type", "mlp3", "mlp2x_gelu"),
    (["--model.modalities.image.preprocess.image_sizee", "3"], "model.modalities.image.preprocess", "image_sizee", "image_size"),
    (["--model.modalities.audio.encoder_config", "[1]"], "model.modalities.audio.encoder_config", "[1]", "mapping"),
    (["--seed", "-1"], "seed", "-1", ">= 0"),
    (["--seed", str(2**40)], "seed", str(2**40), "<= 4294967295"),
    (["--evaluation.judge", "gpt5"], "evaluation.judge", "gpt5", "exact_match"),
    (["--evaluation.judge_kwargs.foo", "1"], "evaluation.judge_kwargs", "foo", "contains"),
    (["--evaluation.batch_size", "0"], "evaluation.batch_size", "0", ">= 1"),
    (["--evaluation.max_test_samples", "0"], "evaluation.max_test_samples", "0", ">= 1"),
    (["--data.on_bad_item", "ignore"], "data.on_bad_item", "ignore", "skip"),
    (["--data.embedded.caption_train", "-1"], "data.embedded", "-1", "non-negative"),
    (["--data.feature_cache", "3"], "data.feature_cache", "3", "true/false"),
    # Options a `**kwargs` loader passes on to the encoder's config: refused by the encoder itself.
    (["--model.modalities.image.encoder_config.image_sise", "64"], "model.modalities.image.encoder_config", "image_sise", "image_size"),
    (["--model.modalities.video.encoder_config.image_sise", "64"], "model.modalities.video.encoder_config", "image_sise", "image_size"),
    (["--model.modalities.video.encoder_config.num_frames", "0"], "model.modalities.video.encoder_config", "num_frames", "positive"),
]  # fmt: skip


@pytest.mark.parametrize(("override", "field", "value", "allowed"), BAD_OVERRIDES, ids=lambda x: str(x))
def test_bad_override_is_named_with_its_value_and_what_is_allowed(override, field, value, allowed):
    with pytest.raises(ValueError) as err:
        load_run_config("quickstart", override)
    message = str(err.value)
    assert field in message and value in message and allowed in message, message


def write_methods(tmp_path, methods: list[dict]):
    data = copy.deepcopy(QUICKSTART)
    data["methods"] = methods
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("method", "field", "value", "allowed"),
    [
        ({"name": "R", "type": "replay", "replay_ratio": 1.5}, "methods[0].replay_ratio", "1.5", "<= 1"),
        ({"name": "R", "type": "replay", "replay_ratio": -0.1}, "methods[0].replay_ratio", "-0.1", ">= 0"),
        ({"name": "M", "type": "mera", "realign_ratio": 2}, "methods[0].realign_ratio", "2", "<= 1"),
        ({"name": "F", "type": "fine_tuning", "plugins": [{"name": "ewcc"}]}, "methods[0].plugins[0].name", "ewcc", "ewc"),
        ({"name": "F", "type": "fine_tuning", "plugins": [{"name": "ewc", "lambdaa": 1}]}, "methods[0].plugins[0]", "lambdaa", "lambda_"),
        ({"name": "F"}, "methods[0]", "type", "missing"),
    ],
    ids=["replay 1.5", "replay -0.1", "realign 2", "unknown plugin", "plugin option", "no type"],
)  # fmt: skip
def test_bad_method_entry_fails_when_the_yaml_is_read(tmp_path, method, field, value, allowed):
    path = write_methods(tmp_path, [method])
    with pytest.raises(ValueError) as err:
        load_run_config(path)
    message = str(err.value)
    assert str(path) in message and field in message and value in message and allowed in message, message


@pytest.mark.parametrize("text", ["- a\n- b\n", "hello\n", "42\n"], ids=["list", "string", "number"])
def test_a_yaml_file_that_is_not_a_mapping_is_a_clear_error(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"run\.yaml: the top level must be a mapping"):
        load_run_config(path)


def test_binary_file_is_named(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match=r"run\.yaml: not a UTF-8 text file"):
        load_run_config(path)


def test_exponent_floats_are_numbers_in_files_and_overrides(tmp_path):
    # YAML 1.1 (PyYAML's default) reads 1e-3 as a string; a learning rate written so was refused.
    assert parse_overrides(["--training.realign.learning_rate", "1e-3"]) == {
        "training": {"realign": {"learning_rate": 1e-3}}
    }
    run = load_run_config("quickstart", ["--training.realign.learning_rate", "2E-5"])
    assert run.training.realign.learning_rate == 2e-5
    data = copy.deepcopy(QUICKSTART)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data).replace("learning_rate: 0.001", "learning_rate: 1e-3"))
    assert load_run_config(path).training.connector_pretrain.learning_rate == 1e-3


def test_no_training_budget_is_refused():
    with pytest.raises(ValueError, match=r"training\.realign\.max_steps: no training budget") as err:
        load_run_config("quickstart", ["--training.realign.num_train_epochs", "0"])
    assert "num_train_epochs" in str(err.value)
    run = load_run_config(
        "quickstart", ["--training.realign.num_train_epochs", "0", "--training.realign.max_steps", "5"]
    )
    assert run.training.realign.max_steps == 5


def test_every_numeric_field_of_the_run_declares_its_range():
    """A new numeric field without `ge`/`gt` metadata would be accepted unchecked: name it here."""
    unchecked = []

    def walk(cls, path):
        for f in dataclasses.fields(cls):
            where = f"{path}.{f.name}" if path else f.name
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                walk(type(default), where)
            elif (
                isinstance(default, (int, float))
                and not isinstance(default, bool)
                and allowed_range(f) is None
            ):
                unchecked.append(where)

    walk(RunConfig, "")
    assert unchecked == [], unchecked


def test_valid_shipped_configs_still_load():
    for name in ("quickstart", "smollm2", "paper-sequential", "paper-reverse"):
        load_run_config(name)


# ---- names registered in trainers/ (checked by trainers.validation before any data is built) ----


@pytest.mark.parametrize(
    ("override", "field", "value"),
    [
        (["--model.backbone.type", "gpt"], "model.backbone.type", "gpt"),
        (["--data.source", "web"], "data.source", "web"),
        (["--training.realign.extra", "{optim: adamw_foo}"], "training.realign", "adamw_foo"),
    ],
)
def test_trainer_side_names_fail_before_the_data(override, field, value):
    from trainers.validation import check_run

    run = load_run_config("quickstart", override)
    with pytest.raises(ValueError) as err:
        check_run(run)
    assert field in str(err.value) and value in str(err.value), str(err.value)


def test_unknown_method_type_and_empty_realignment_fail_before_the_data(tmp_path):
    from trainers.validation import check_run

    with pytest.raises(ValueError, match=r"methods\[1\]\.type: unknown method 'merra'; known: \[.*'mera'"):
        check_run(
            load_run_config(
                write_methods(tmp_path, [{"name": "E", "type": "experts"}, {"name": "M", "type": "merra"}])
            )
        )
    with pytest.raises(ValueError, match=r"methods\[0\]\.replay_ratio: got 0, but method 'M' realigns"):
        check_run(
            load_run_config(write_methods(tmp_path, [{"name": "M", "type": "mera", "replay_ratio": 0}]))
        )
    check_run(
        load_run_config(write_methods(tmp_path, [{"name": "F", "type": "fine_tuning", "replay_ratio": 0}]))
    )


def test_run_curriculum_checks_before_building_the_benchmark(tmp_path, monkeypatch):
    from trainers import runner

    built = []
    monkeypatch.setattr(runner, "Workspace", lambda *a, **k: built.append(1))
    run = load_run_config("quickstart", ["--model.backbone.type", "gpt", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="model.backbone.type"):
        runner.run_curriculum(run)
    assert built == []


def test_use_kernels_is_off_by_default_and_reaches_from_pretrained(monkeypatch):
    from transformers import AutoModelForCausalLM

    from hf_mera.models import pretrained

    assert load_run_config("quickstart").model.use_kernels is False
    seen = []

    def from_pretrained(*args, **kwargs):
        seen.append(kwargs)
        raise OSError("stop")  # what was passed is all this test needs

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    for flag in (False, True):
        with pytest.raises(OSError, match="stop"):
            pretrained.load_causal_lm("some/folder", use_kernels=flag)
    assert [k.get("use_kernels") for k in seen] == [False, True]


# ---- run.py --check ----------------------------------------------------------------------------

TINY = [
    "--order", "[image, audio]",
    "--data.embedded", "{caption_train: 8, qa_train: 8, caption_test: 2, qa_test: 2, cross_test: 2, speech_fraction: 0.0}",
    "--model.backbone.hidden_size", "32",
    "--model.backbone.num_layers", "2",
]  # fmt: skip


def test_check_plans_every_phase_and_sees_the_cached_ones(tmp_path):
    from hf_mera.data.embedded import EmbeddedSizes, build_embedded_benchmark
    from trainers.checkpoints import CheckpointStore
    from trainers.data_sources import load_data_source
    from trainers.plan import check, plan_phases

    base = [*TINY, "--output_dir", str(tmp_path / "out"), "--data.root", str(tmp_path / "bench")]
    lines: list[str] = []
    assert check(load_run_config("quickstart", base), out=lines.append) == 0
    assert any("embedded benchmark not generated yet" in line for line in lines), lines
    assert any("plan: needs the data" in line for line in lines), lines

    sizes = EmbeddedSizes(
        caption_train=8, qa_train=8, caption_test=2, qa_test=2, cross_test=2, speech_fraction=0.0
    )
    build_embedded_benchmark(
        tmp_path / "bench", seed=0, sizes=sizes, modalities=("image", "audio"), progress=False
    )

    def plan(*extra):
        run = load_run_config("quickstart", [*base, *extra])
        return plan_phases(run, load_data_source(run.data, list(run.order), run.seed))

    phases = plan()
    by_method = {
        m: [p.name for p in phases if p.method == m] for m in ("Experts", "Fine-Tuning", "MERA (10%)")
    }
    assert by_method["Experts"] == [
        "backbone", "add-image", "pretrain-image", "it-image", "add-audio", "pretrain-audio", "it-audio"
    ]  # fmt: skip
    assert by_method["MERA (10%)"][-2:] == ["merge-audio", "realign-audio"]  # stage 1 is the expert
    assert "realign-image" not in by_method["MERA (10%)"]
    assert not any(p.cached for p in phases)
    # Stage 1 of every method is the expert's stage 1: planned once, then shared.
    shared = {(p.method, p.name): p.shared for p in phases}
    assert shared[("MERA (10%)", "it-image")] == "Experts" and shared[("Experts", "it-image")] is None

    # A phase the store holds is reported cached, found by the run's own lookup.
    backbone = next(p for p in phases if p.name == "backbone")
    store = CheckpointStore(tmp_path / "out" / "checkpoints")
    tmp = store.begin("backbone", backbone.key)
    (tmp / "model.safetensors").write_bytes(b"0" * 1000)
    store.commit("backbone", backbone.key, tmp, {"phase": "backbone"})
    cached = {(p.method, p.name) for p in plan() if p.cached and p.shared is None}
    assert cached == {("Experts", "backbone")}
    lines.clear()
    assert check(load_run_config("quickstart", base), out=lines.append) == 0
    assert any(line.startswith("plan: ") and "1 cached" in line for line in lines), lines
    assert any(line.startswith("disk: ") and "phases to run write about" in line for line in lines), lines

    # Another realignment setting changes the realignment's key and nothing before it.
    keys = {(p.method, p.name): p.key for p in phases}
    changed = {
        (p.method, p.name)
        for p in plan("--training.realign.max_steps", "7")
        if keys[(p.method, p.name)] != p.key
    }
    assert changed == {("MERA (10%)", "realign-audio")}


def test_check_flag_on_the_command_line(tmp_path, capsys):
    from hf_mera.run import main

    args = ["--check", *TINY, "--output_dir", str(tmp_path / "out"), "--data.root", str(tmp_path / "bench")]
    assert main(args) == 0
    assert "plan: needs the data" in capsys.readouterr().out
    assert main(["--check", "--training.realign.learning_rate", "-1"]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "training.realign.learning_rate: got -1.0; allowed: > 0" in err


def test_the_model_loads_without_hub_kernels_unless_asked(monkeypatch):
    from transformers import PreTrainedModel

    from hf_mera import AnyModalityLlava

    seen = []

    def from_pretrained(cls, *args, **kwargs):
        seen.append(kwargs)
        raise OSError("stop")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(from_pretrained))
    for kwargs in ({}, {"use_kernels": True}):
        with pytest.raises(OSError, match="stop"):
            AnyModalityLlava.from_pretrained("some/folder", **kwargs)
    assert [k.get("use_kernels") for k in seen] == [False, True]


def test_check_names_missing_data_and_weights(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    from hf_mera.run import main
    from trainers.plan import weights_location

    assert weights_location(str(tmp_path)) == (f"local folder {tmp_path}", True)
    assert weights_location(None)[1] is True
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    where, found = weights_location("nobody/no-such-model")
    assert not found and "HF_HUB_OFFLINE" in where
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert weights_location("nobody/no-such-model")[1] is True  # the run downloads it
    # The paper's datasets are not on this machine: --check says which file it missed, exits 1.
    assert main(["paper-sequential", "--check", "--output_dir", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "problem(s)" in out and "data: mscoco: annotation file for 'train' not found" in out, out
