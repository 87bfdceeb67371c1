"""A fifth modality added in one file outside the package (`fixtures/toy_modality.py`, rows of numbers
in `.csv` files) runs a five-stage curriculum end to end: its embedded data, training, the merge,
the stage cards and an upload in the demo, with no edit anywhere else (slow; CI runs it)."""

from __future__ import annotations

import importlib
import json
import sys

import pytest
from helpers import run_in_process, tiny_overrides
from huggingface_hub import ModelCard

pytestmark = pytest.mark.slow

ORDER = ["table", "image", "video", "audio", "point_cloud"]


@pytest.fixture(scope="module")
def toy():
    from hf_mera.modalities import ENCODER_REGISTRY, MODALITY_REGISTRY

    module = importlib.import_module("fixtures.toy_modality")
    yield module
    # A test-only modality must not leak into other tests (it would join the default benchmark).
    MODALITY_REGISTRY._entries.pop("table")
    ENCODER_REGISTRY._entries.pop("toy_table")
    sys.modules.pop("fixtures.toy_modality")


@pytest.fixture(scope="module")
def run_dir(toy, tmp_path_factory):
    root = tmp_path_factory.mktemp("fifth")
    out = root / "run"
    overrides = tiny_overrides(root / "bench", out, order="[" + ", ".join(ORDER) + "]")
    overrides += ["--model.modalities.table", "{encoder_config: {num_tokens: 2, hidden_size: 16}}"]
    overrides += ["--methods", "[{name: MERA, type: mera}]"]
    run_in_process(overrides)
    return out


def stage_dir(out, index: int):
    (folder,) = out.glob(f"*/stage-{index}-{ORDER[index - 1]}")
    return folder


def test_the_benchmark_and_the_run_cover_the_fifth_modality(run_dir):
    manifest = json.loads(next((run_dir.parent / "bench").glob("**/manifest.json")).read_text())
    assert manifest["modalities"] == ["image", "video", "audio", "point_cloud", "table"]  # registry order
    assert manifest["question_types"]["table"] == {"trend": ["rise", "fall"], "level": ["small", "large"]}
    final = stage_dir(run_dir, 5)
    info = json.loads((final / "stage.json").read_text())
    assert info["seen"] == ORDER and set(info["scores"]) == set(ORDER)
    from safetensors import safe_open

    with safe_open(str(final / "model.safetensors"), "pt") as weights:
        assert any(k.startswith("model.connectors.table.") for k in weights.keys())


def test_the_cards_read_the_modality_s_own_facts(run_dir):
    first = ModelCard.load(stage_dir(run_dir, 1) / "README.md")
    # One input modality beside text: the toy's own spoken name and example file. Its pipeline tag,
    # table-question-answering, names a pipeline that cannot load this model: the card says any-to-any.
    assert first.data.pipeline_tag == "any-to-any"
    assert "understands text, table of numbers, trained by" in first.text
    assert '{"type": "table", "path": "rows.csv"}' in first.text
    last = ModelCard.load(stage_dir(run_dir, 5) / "README.md")
    assert last.data.pipeline_tag == "any-to-any"
    assert "table of numbers, image, video, audio, point cloud" in last.text


def test_the_demo_takes_an_upload_of_the_fifth_modality(run_dir, tmp_path):
    from demo.app import ChatBackend, DemoSettings, load_checkpoint

    final = stage_dir(run_dir, 5)
    model, processor = load_checkpoint(str(final))
    backend = ChatBackend(model, processor, DemoSettings(max_new_tokens=4), str(final))
    assert "table of numbers (.csv)" in backend.header()
    rows = tmp_path / "rows.csv"
    rows.write_text("1.0,1.1,1.2,1.3,1.4,1.5,1.6,1.7\n")
    assert backend.route(str(rows)) == "table"
    *_, (answer, _view) = backend.respond({"text": "describe the table", "files": [str(rows)]}, [])
    assert answer and not answer.startswith(("I can't", "Something went wrong", "This checkpoint")), answer
    broken = tmp_path / "broken.csv"
    broken.write_text("not, numbers\n")
    *_, (answer, _view) = backend.respond({"text": "describe the table", "files": [str(broken)]}, [])
    assert answer.startswith("Cannot read table") and "`broken.csv`" in answer, answer
