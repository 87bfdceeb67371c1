"""The Gradio demo's chat logic, in process: routing uploads, streaming, and every failure as a sentence."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from helpers import save_tiny_checkpoint

# The demo is an app in the repository, not part of the installed package: import it from there
# whatever the working directory (plain `pytest` puts only tests/ on the path).
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from demo.app import (  # noqa: E402
    ChatBackend,
    DemoSettings,
    find_quickstart_checkpoint,
    load_checkpoint,
    main,
    parse_args,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_tokenizer):
    # Point clouds learned first: the header must follow stage.json, not config.json's sorted keys.
    return save_tiny_checkpoint(
        tmp_path_factory.mktemp("ckpt"), tiny_tokenizer, order=["point_cloud", "image"]
    )


@pytest.fixture(scope="module")
def backend(checkpoint):
    model, processor = load_checkpoint(str(checkpoint))
    return ChatBackend(model, processor, DemoSettings(max_new_tokens=6, max_upload_mb=0.01), str(checkpoint))


def test_header_names_the_learned_modalities_in_order(backend):
    header = backend.header()
    assert "**Knows (in the order learned):** point cloud, image, and text" in header
    assert "**Not learned:** video, audio." in header  # the modality registry's order, the paper's


def test_image_and_point_cloud_in_one_message_stream_an_answer(backend, media_files):
    outputs = list(backend.respond({"text": "what color is the shape ?", "files": [media_files["image0"], media_files["point_cloud0"]]}, []))  # fmt: skip
    answers = [answer for answer, _ in outputs]
    assert len(answers) >= 2 and all(answers[i + 1].startswith(answers[i]) for i in range(len(answers) - 1))
    assert answers[-1].strip() and "Traceback" not in answers[-1]
    view = outputs[-1][1]
    assert view.endswith(".glb") and Path(view).stat().st_size > 0  # the .npy shown in gr.Model3D


def test_history_is_passed_as_text(backend, monkeypatch):
    seen = {}
    apply = backend.processor.apply_chat_template

    def spy(conversation, **kwargs):
        seen["conversation"] = conversation
        return apply(conversation, **kwargs)

    monkeypatch.setattr(backend.processor, "apply_chat_template", spy)
    history = [
        {"role": "user", "content": [{"type": "text", "text": "describe the input ."}]},
        {"role": "assistant", "content": "a red circle"},
        {"role": "user", "content": {"path": "/gone.png"}},  # an earlier file: not re-sent
    ]
    list(backend.respond("how many beeps ?", history))
    assert [m["role"] for m in seen["conversation"]] == ["user", "assistant", "user"]
    assert seen["conversation"][1]["content"] == "a red circle"


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("broken.png", b"this is not a png", "Cannot read image `broken.png`"),
        ("cloud.npy", b"\x93NUMPY garbage", "Cannot read point cloud `cloud.npy`"),
        ("notes.txt", b"hello", "`notes.txt`: .txt files are not supported"),
        ("clip.mp4", b"\x00" * 100, "has not learned video (`clip.mp4`)"),
        ("tone.wav", b"\x00" * 100, "has not learned audio (`tone.wav`)"),
        ("huge.png", b"\x00" * 20_000, "`huge.png` is 0.02 MB; this demo takes files up to 0.01 MB"),
        ("empty.png", b"", "`empty.png`: the file is empty"),
    ],
)
def test_bad_uploads_are_answered_in_the_chat(backend, tmp_path, name, data, expected):
    outputs = list(backend.respond({"text": "what is it ?", "files": [write(tmp_path / name, data)]}, []))
    assert len(outputs) == 1
    answer = outputs[0][0]
    assert expected in answer and "Traceback" not in answer and str(tmp_path) not in answer


def test_too_many_files_and_an_empty_message(backend, media_files):
    answer = list(backend.respond({"text": "x", "files": [media_files["image0"]] * 9}, []))[-1][0]
    assert "one message takes up to 8" in answer
    assert list(backend.respond({"text": "  ", "files": []}, []))[-1][0].startswith("Type a question")


def test_an_internal_failure_is_a_sentence_not_a_stack_trace(backend, media_files, monkeypatch, caplog):
    def boom(**kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(backend.model, "generate", boom)
    answer = list(backend.respond({"text": "hi", "files": [media_files["image0"]]}, []))[-1][0]
    assert answer.startswith("Something went wrong while answering (RuntimeError)")
    assert "Traceback" not in answer
    assert "chat request failed" in caplog.text  # the server log keeps the details


def test_default_checkpoint_is_the_latest_final_mera_stage(tmp_path):
    def stage(method_dir: str, index: int, method_type: str, order=("image", "audio")):
        folder = tmp_path / method_dir / f"stage-{index}-{order[index - 1]}"
        folder.mkdir(parents=True)
        (folder / "stage.json").write_text(
            json.dumps({"method_type": method_type, "stage": index, "order": list(order)})
        )
        return folder

    assert find_quickstart_checkpoint(tmp_path) is None
    stage("mera-10", 1, "mera")
    stage("fine-tuning", 2, "fine_tuning")
    assert find_quickstart_checkpoint(tmp_path) is None  # no finished MERA curriculum yet
    older = stage("mera-10", 2, "mera")
    newer = stage("mera-50", 2, "mera")
    os.utime(older / "stage.json", (time.time() - 60, time.time() - 60))
    assert find_quickstart_checkpoint(tmp_path) == newer


def test_without_a_checkpoint_it_says_which_command_makes_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "accelerate launch hf_mera/run.py" in err and "Traceback" not in err


def test_an_unloadable_checkpoint_is_a_message(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "Cannot load checkpoint" in capsys.readouterr().err


def test_binds_loopback_unless_told_otherwise():
    assert parse_args([]).host == "127.0.0.1"
    settings = parse_args(["ckpt", "--host", "0.0.0.0", "--port", "9000", "--max-upload-mb", "2.5"])
    assert (settings.checkpoint, settings.host, settings.port, settings.max_upload_mb) == (
        "ckpt",
        "0.0.0.0",
        9000,
        2.5,
    )


def test_all_four_modalities_and_meshes_in_one_message(tmp_path, tiny_tokenizer, media_files):
    import trimesh

    folder = save_tiny_checkpoint(
        tmp_path / "all", tiny_tokenizer, ("image", "video", "audio", "point_cloud")
    )
    model, processor = load_checkpoint(str(folder))
    backend = ChatBackend(model, processor, DemoSettings(max_new_tokens=4), str(folder))
    # Without stage.json the order is unknown (config.json sorts the modalities by name).
    assert "**Knows:** audio, image, point cloud, video, and text" in backend.header()
    (folder / "stage.json").write_text(json.dumps({"seen": ["image", "video", "audio", "point_cloud"]}))
    backend = ChatBackend(model, processor, DemoSettings(max_new_tokens=4), str(folder))
    assert "**Knows (in the order learned):** image, video, audio, point cloud, and text" in backend.header()
    assert "Not learned" not in backend.header()
    meshes = []
    for suffix in (".obj", ".ply", ".glb"):
        meshes.append(str(tmp_path / f"box{suffix}"))
        trimesh.creation.box().export(meshes[-1])
    files = [media_files[k] for k in ("image0", "video0", "audio0", "point_cloud0")] + meshes
    answer, view = list(backend.respond({"text": "describe the input .", "files": files}, []))[-1]
    assert answer.strip() and not answer.startswith(("Cannot", "I can't", "Something", "This checkpoint"))
    assert view == meshes[-1]  # a mesh is shown as it is; the last point cloud of the message wins
