"""Hub publishing: the push_to_hub section, what a push would send (intercepted), and loading a
checkpoint from a hub-cache snapshot offline with only `import hf_mera` (no trust_remote_code)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from hf_mera.continual.curriculum import load_run_config, shipped_config

REPO = Path(__file__).resolve().parent.parent
SECRET = "hf_TESTtokenThatMustNeverBeWritten0123"


# ---- the curriculum section ----------------------------------------------------------------------
def test_push_to_hub_section_defaults_and_values():
    run = load_run_config("quickstart")
    assert run.push_to_hub.repo_id is None  # pushing is opt-in
    run = load_run_config(
        "quickstart", ["--push_to_hub.repo_id", "org/mera-tiny", "--push_to_hub.private", "false"]
    )
    assert run.push_to_hub.repo_id == "org/mera-tiny" and run.push_to_hub.private is False
    assert run.push_to_hub.revision == "stage-{stage}-{modality}" and run.push_to_hub.final_revision == "main"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"repo_id": "not a repo"}, "push_to_hub.repo_id"),
        ({"repo_id": "org/x", "revision": "all-stages"}, "each stage gets its own branch"),
        ({"repo_id": "org/x", "revision": "stage-{epoch}"}, "push_to_hub.revision"),
        ({"repo_id": "org/x", "method": "Nope"}, "push_to_hub.method"),
        ({"privat": True}, "push_to_hub.privat"),
        ({"token": "hf_x"}, "HF_TOKEN"),
    ],
)
def test_bad_push_to_hub_sections_fail_by_name(tmp_path, section, message):
    path = tmp_path / "run.yaml"
    config = yaml.safe_load(shipped_config("quickstart").read_text())
    path.write_text(yaml.safe_dump({**config, "push_to_hub": section}))
    with pytest.raises(ValueError, match=message):
        load_run_config(path)


def test_a_token_on_the_command_line_is_refused():
    with pytest.raises(ValueError, match="HF_TOKEN"):
        load_run_config("quickstart", ["--push_to_hub.token", "hf_abc"])


# ---- pushing (huggingface_hub intercepted) -------------------------------------------------------
class Recorder:
    """Stands in for the network: records every HfApi call and the files upload_folder would send."""

    def __init__(self, monkeypatch):
        from huggingface_hub import HfApi
        from huggingface_hub.utils import filter_repo_objects

        self.calls: list[tuple[str, dict]] = []
        self.tokens: list[str | None] = []
        recorder = self

        def create_repo(api, repo_id, **kwargs):
            recorder.tokens.append(api.token)
            recorder.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

        def create_branch(api, repo_id, **kwargs):
            recorder.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

        def upload_folder(api, **kwargs):
            folder = Path(kwargs["folder_path"])
            files = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
            sent = sorted(filter_repo_objects(files, ignore_patterns=kwargs.get("ignore_patterns")))
            recorder.calls.append(("upload_folder", {**kwargs, "files": sent}))

        for name, fn in [
            ("create_repo", create_repo),
            ("create_branch", create_branch),
            ("upload_folder", upload_folder),
        ]:
            monkeypatch.setattr(HfApi, name, fn)

        def no_network(*args, **kwargs):
            raise AssertionError("a hub call that the test does not intercept")

        for name in ("create_commit", "upload_file"):
            monkeypatch.setattr(HfApi, name, no_network)

    def uploads(self):
        return [kwargs for name, kwargs in self.calls if name == "upload_folder"]


def save_tiny_stage(folder: Path, tiny_tokenizer, info: dict):
    from conftest import make_tiny_model

    model, processor = make_tiny_model(tiny_tokenizer, modalities=info["seen"])
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "stage.json").write_text(json.dumps(info))
    (folder / ".complete").write_text("")  # hidden bookkeeping: never part of the model
    return model, processor


def stage_info(stage: int, modality: str, seen: list[str]) -> dict:
    return {
        "method": "MERA (10%)",
        "method_type": "mera",
        "stage": stage,
        "modality": modality,
        "order": ["image", "point_cloud"],
        "seen": seen,
        "checkpoint": "phase",
        "scores": {m: {"caption": 0.5, "qa": 0.5} for m in seen},
        "benchmark_hash": "h",
    }


@pytest.fixture
def pushed(tmp_path, tiny_tokenizer, monkeypatch):
    """Both stages of a tiny two-stage MERA run published and pushed through the trainer's hooks."""
    from trainers.merge_and_realign import MergeAndRealignTrainer

    monkeypatch.setenv("HF_TOKEN", SECRET)
    recorder = Recorder(monkeypatch)
    run = load_run_config(
        "quickstart",
        {
            "order": ["image", "point_cloud"],
            "output_dir": str(tmp_path),
            "push_to_hub": {"repo_id": "org/mera-tiny"},
        },
    )
    (tmp_path / "run_config.yaml").write_text(yaml.safe_dump(asdict(run)))  # as the runner writes it

    class Hooks:  # the two hooks of MergeAndRealignTrainer, on a stand-in with the run
        pass

    hooks = Hooks()
    hooks.run = run
    folders = {}
    for stage, modality, seen in [(1, "image", ["image"]), (2, "point_cloud", ["image", "point_cloud"])]:
        folder = tmp_path / "mera-10" / f"stage-{stage}-{modality}"
        folder.mkdir(parents=True)
        info = stage_info(stage, modality, seen)
        save_tiny_stage(folder, tiny_tokenizer, info)
        MergeAndRealignTrainer.on_stage_saved(hooks, folder, info)
        MergeAndRealignTrainer.on_stage_published(hooks, folder, info)
        folders[stage] = folder
    return recorder, folders, tmp_path


def test_push_sends_each_stage_to_its_branch_and_the_final_one_to_main(pushed):
    recorder, folders, _ = pushed
    assert recorder.tokens == [SECRET, SECRET]  # from the environment, in memory
    creates = [kw for name, kw in recorder.calls if name == "create_repo"]
    assert all(
        kw["repo_id"] == "org/mera-tiny" and kw["private"] is True and kw["exist_ok"] for kw in creates
    )
    branches = [kw["branch"] for name, kw in recorder.calls if name == "create_branch"]
    assert branches == ["stage-1-image", "stage-2-point_cloud"]  # main exists already
    uploads = recorder.uploads()
    assert [(u["revision"], Path(u["folder_path"]).name) for u in uploads] == [
        ("stage-1-image", "stage-1-image"),
        ("stage-2-point_cloud", "stage-2-point_cloud"),
        ("main", "stage-2-point_cloud"),
    ]
    for upload in uploads:
        assert upload["repo_id"] == "org/mera-tiny" and "token" not in upload
        assert {
            "README.md",
            "config.json",
            "model.safetensors",
            "stage.json",
            "processor_config.json",
        } <= set(upload["files"])
        assert ".complete" not in upload["files"]
    assert uploads[0]["commit_message"] == "MERA (10%): stage 1 (image)"


def test_the_token_is_written_nowhere(pushed):
    _, _, output_dir = pushed
    for path in output_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_other_methods_and_unconfigured_runs_push_nothing(tmp_path, monkeypatch):
    from model_cards import push_stage

    recorder = Recorder(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    run = load_run_config("quickstart", {"push_to_hub": {"repo_id": "org/x", "method": "Fine-Tuning"}})
    assert push_stage(tmp_path, stage_info(1, "image", ["image"]), run) == []  # MERA is not pushed
    assert push_stage(tmp_path, stage_info(1, "image", ["image"]), load_run_config("quickstart")) == []
    assert recorder.calls == []


def test_a_missing_token_fails_before_training(monkeypatch):
    from model_cards import check_push_ready

    monkeypatch.delenv("HF_TOKEN", raising=False)
    run = load_run_config("quickstart", {"push_to_hub": {"repo_id": "org/x"}})
    check_push_ready(run, "Experts")  # not pushed: no token needed
    with pytest.raises(ValueError, match="HF_TOKEN"):
        check_push_ready(run, "MERA (10%)")


# ---- loading what was pushed, from a hub-cache snapshot, offline ---------------------------------
def lay_out_hub_cache(cache: Path, repo_id: str, revisions: dict[str, Path]) -> None:
    """Files as `huggingface_hub` caches them: blobs by content hash, snapshots/<commit> of symlinks
    into blobs, refs/<revision> holding the commit hash."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for revision, folder in revisions.items():
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        commit = hashlib.sha1("".join(p.name for p in files).encode() + revision.encode()).hexdigest()
        for file in files:
            blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(file.read_bytes())
            link = repo / "snapshots" / commit / file.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
        ref = repo / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)


LOAD_SCRIPT = """
import json, sys
import torch
import hf_mera  # noqa: F401  the only import needed
from transformers import AutoModelForCausalLM, AutoProcessor

out = {}
for revision in ("main", "stage-1-image"):
    model = AutoModelForCausalLM.from_pretrained("org/mera-tiny", revision=revision)
    processor = AutoProcessor.from_pretrained("org/mera-tiny", revision=revision)
    messages = [{"role": "user", "content": [{"type": "image", "path": sys.argv[1]}, {"type": "text", "text": "what color is the shape ?"}]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    out[revision] = {"class": type(model).__name__, "processor": type(processor).__name__,
                     "modalities": sorted(model.config.modalities), "logits": logits.tolist()}
print("RESULT" + json.dumps(out))
"""


def test_pushed_checkpoint_loads_from_the_hub_cache_offline_without_remote_code(
    pushed, tmp_path, media_files
):
    import torch

    from hf_mera import AnyModalityLlava, AnyModalityProcessor

    recorder, folders, _ = pushed
    # The snapshot holds exactly what each upload would have sent.
    sent = {u["revision"]: u for u in recorder.uploads()}
    for upload in sent.values():
        assert (
            sorted(p.name for p in Path(upload["folder_path"]).iterdir() if not p.name.startswith("."))
            == upload["files"]
        )
    cache = tmp_path / "hub-cache"
    lay_out_hub_cache(cache, "org/mera-tiny", {rev: Path(u["folder_path"]) for rev, u in sent.items()})
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(tmp_path / "hf-home"),
    }
    env.pop("HF_TOKEN", None)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, media_files["image0"]],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.split("RESULT", 1)[1])
    assert loaded["main"]["class"] == "AnyModalityLlavaForConditionalGeneration"
    assert loaded["main"]["processor"] == "AnyModalityProcessor"
    assert loaded["main"]["modalities"] == ["image", "point_cloud"]
    assert loaded["stage-1-image"]["modalities"] == ["image"]
    # Same weights as the folder that was pushed: same logits.
    for revision, stage in [("main", 2), ("stage-1-image", 1)]:
        model = AnyModalityLlava.from_pretrained(folders[stage])
        processor = AnyModalityProcessor.from_pretrained(folders[stage])
        messages = [{"role": "user", "content": [{"type": "image", "path": media_files["image0"]}, {"type": "text", "text": "what color is the shape ?"}]}]  # fmt: skip
        inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        with torch.no_grad():
            expected = model(**inputs).logits[0, -1]
        torch.testing.assert_close(torch.tensor(loaded[revision]["logits"]), expected)


@pytest.mark.slow
def test_a_real_run_writes_cards_and_pushes_every_stage(tmp_path, monkeypatch):
    """The trainer's own save_stage: card in every stage folder, each stage pushed once published."""
    from huggingface_hub import ModelCard

    from trainers.runner import run_curriculum

    monkeypatch.setenv("HF_TOKEN", SECRET)
    recorder = Recorder(monkeypatch)
    sizes = (
        "{caption_train: 16, qa_train: 16, caption_test: 4, qa_test: 4, cross_test: 4, speech_fraction: 0.0}"
    )
    overrides = [
        "--output_dir", str(tmp_path / "out"), "--order", "[image, point_cloud]",
        "--data.root", str(tmp_path / "bench"), "--data.embedded", sizes,
        "--model.backbone.hidden_size", "32", "--model.backbone.num_layers", "1",
        "--model.backbone.text_pretrain_steps", "2", "--model.backbone.text_instruct_steps", "1",
        "--model.backbone.text_instruct_batch_size", "8",
        "--training.connector_pretrain.max_steps", "1", "--training.instruction_tuning.max_steps", "1",
        "--training.realign.max_steps", "1", "--evaluation.max_new_tokens", "2",
        "--evaluation.cross_modal", "false",
        "--methods", "[{name: MERA, type: mera}]", "--push_to_hub.repo_id", "org/run",
    ]  # fmt: skip
    run_curriculum(load_run_config("quickstart", overrides), progress=False)
    stages = [tmp_path / "out" / "mera" / name for name in ("stage-1-image", "stage-2-point_cloud")]
    for stage in stages:
        assert ModelCard.load(stage / "README.md").data.library_name == "hf_mera"
    uploads = recorder.uploads()
    assert [(Path(u["folder_path"]), u["revision"]) for u in uploads] == [
        (stages[0], "stage-1-image"),
        (stages[1], "stage-2-point_cloud"),
        (stages[1], "main"),
    ]
    assert all("README.md" in u["files"] and "model.safetensors" in u["files"] for u in uploads)
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
