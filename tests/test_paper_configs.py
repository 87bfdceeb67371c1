"""The shipped paper configs start: their data sections read a miniature of the paper's eight datasets
(laid out as the releases are, `tests/fixtures/paper_datasets.py`), and a tiny model trains every
phase of a stage on them.

The configs' hub models (Llama-3-8B-Instruct, CLIP-ViT-L/14-336, Whisper-large-v3) cannot be
downloaded here, so the training test swaps them for tiny random ones: a 2-layer Llama and a tiny
CLIP vision tower saved to local folders and loaded as the YAML says (`type: pretrained`,
`dtype: bfloat16`; image and video keep the YAML's CLIP settings), and for audio and point clouds
the tiny built-in spectrogram and point-patch encoders instead of Whisper and the full-size ones.
Data, training, method and order settings come from the YAML, shortened to two stages of two
steps a phase.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_CLIP_VISION, TINY_MODALITIES
from fixtures.paper_datasets import CAP3D_OBJECTS, PAPER_DIRS, write_paper_tree

from hf_mera.continual.curriculum import PAPER_ORDERS, load_run_config, shipped_config
from hf_mera.data.adapters import PAPER_DATASETS
from hf_mera.data.format import validate_sample

PAPER_CONFIGS = ["paper-sequential", "paper-reverse"]
CAP3D_SMALL_TEST = {"data": {"paper": {"cap3d": {"test_size": 2}}}}


@pytest.fixture(scope="module")
def paper_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    write_paper_tree(root)
    return root


@pytest.fixture
def in_paper_root(paper_root, monkeypatch):
    monkeypatch.chdir(paper_root)  # the configs name folders relative to the working directory
    return paper_root


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_yaml_data_section_reads_all_eight_datasets(name, in_paper_root):
    from trainers.data_sources import load_data_source

    run = load_run_config(name)
    with pytest.raises(ValueError, match="cap3d: test_size 1000 holds out all 5 captions"):
        load_data_source(run.data, ["point_cloud"], run.seed)
    # Cap3D has no official split: the 1K test set comes out of its ~660K captions; the miniature
    # has five, so it holds out two.
    run = load_run_config(name, CAP3D_SMALL_TEST)
    # Appendix B's subsets are configured: 1K test sets, 50K Cap3D and 30K Cap3D-QA training sets.
    assert run.data.source == "paper" and set(run.data.paper) == set(PAPER_DIRS)
    assert {n: c["data_dir"] for n, c in run.data.paper.items()} == PAPER_DIRS
    assert all(c["test_size"] == 1000 for n, c in run.data.paper.items() if n != "cap3d")
    assert (
        run.data.paper["cap3d"]["train_size"] == 50000 and run.data.paper["cap3d_qa"]["train_size"] == 30000
    )
    assert run.data.paper["cap3d"]["max_caption_chars"] == 100

    source = load_data_source(run.data, list(run.order), run.seed)
    counts = {}
    for modality in run.order:
        caption_name, qa_name = PAPER_DATASETS[modality]
        for split, sets in (("train", source.train_sets[modality]), ("test", source.test_sets[modality])):
            assert set(sets) == {"caption", "qa"}, (modality, split)
            for task, dataset in sets.items():
                assert len(dataset) > 0, (modality, split, task)
                for row in dataset:
                    validate_sample(row)
                    assert Path(row["media"][0]["path"]).is_file(), row["id"]
                counts[f"{modality}/{split}/{task}"] = len(dataset)
    # What each release's rules give on the miniature (see the fixture module):
    assert counts["image/train/caption"] == 3 and counts["image/test/caption"] == 3  # one row an image
    assert counts["image/test/qa"] == 3
    assert counts["video/train/caption"] == 4 and counts["video/test/caption"] == 2  # English rows, vid split
    assert counts["video/train/qa"] == 4 and counts["video/test/qa"] == 4
    assert counts["audio/train/caption"] == 3 and counts["audio/test/caption"] == 2  # test: clips
    assert counts["audio/train/qa"] == 4 and counts["audio/test/qa"] == 4  # confident rows only
    # The caption over 100 characters is dropped.
    assert counts["point_cloud/train/caption"] == 3 and counts["point_cloud/test/caption"] == 2
    assert len(CAP3D_OBJECTS) == 6
    assert counts["point_cloud/train/qa"] == 3 and counts["point_cloud/test/qa"] == 2

    okvqa = next(r for r in source.test_sets["image"]["qa"] if r["question"] == "What colour is the square?")
    assert len(okvqa["references"]) == 10 and okvqa["messages"][-1]["content"] == "green"
    audiocaps = source.test_sets["audio"]["caption"][0]
    assert len(audiocaps["references"]) == 5
    # Scoring per dataset: VQA accuracy for OK-VQA, the run's judge for the other QA sets.
    assert source.metric("image", "qa") == "vqa_accuracy"
    assert source.metric("image", "caption") == "cider"
    assert {source.metric(m, "qa") for m in ("video", "audio", "point_cloud")} == {"accuracy"}


def test_paper_yaml_refuses_root_and_typos_by_name(in_paper_root):
    with pytest.raises(ValueError, match=r"data\.paper\.mscoco\.root: .*'data_dir'"):
        load_run_config("paper-sequential", {"data": {"paper": {"mscoco": {"root": "data/mscoco2014"}}}})
    with pytest.raises(ValueError, match=r"data\.paper\.cap3d\.train_sise: unknown field; known: data_dir"):
        load_run_config("paper-sequential", {"data": {"paper": {"cap3d": {"train_sise": 10}}}})
    with pytest.raises(ValueError, match=r"data\.paper\.okvqa\.data_dir: missing"):
        load_run_config("paper-sequential", {"data": {"paper": {"okvqa": {"data_dir": None}}}})
    with pytest.raises(ValueError, match=r"data\.paper\.okvqa: AdapterConfig\.metric must be one of"):
        load_run_config("paper-sequential", {"data": {"paper": {"okvqa": {"metric": "bleu"}}}})
    with pytest.raises(
        ValueError,
        match=r"paper-sequential\.yaml: data\.paper: unknown dataset adapter 'coco'; known: \['audiocaps'",
    ):
        load_run_config("paper-sequential", {"data": {"paper": {"coco": {"data_dir": "x"}}}})


def tiny_paper_run(name: str, root: Path) -> Path:
    """The paper YAML with a tiny model section, two stages and two steps a phase; returns its path."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from hf_mera.models.tiny_lm import build_tiny_llama, build_word_level_tokenizer

    words = ["a red green blue yellow square box tile tone hum beep stool plant car duck hydrant"]
    words += ["what colour color is the on wall ? . , no yes describe image video audio 3d object briefly"]
    tokenizer = build_word_level_tokenizer(words)
    llm_dir = root / "tiny-llm"
    build_tiny_llama(tokenizer, hidden_size=32, num_layers=2, num_heads=4, seed=0).save_pretrained(llm_dir)
    tokenizer.save_pretrained(llm_dir)

    data = yaml.safe_load(shipped_config(name).read_text())
    data["data"]["paper"]["cap3d"]["test_size"] = (
        2  # see test_paper_yaml_data_section_reads_all_eight_datasets
    )
    paper_dtype = data["model"]["backbone"]["dtype"]
    assert paper_dtype == "bfloat16"
    clip_dir = root / "tiny-clip"
    clip = CLIPVisionModel(
        CLIPVisionConfig(**{k: v for k, v in TINY_CLIP_VISION.items() if k != "model_type"})
    )
    clip.save_pretrained(clip_dir)

    data["model"]["backbone"] = {"type": "pretrained", "name_or_path": str(llm_dir), "dtype": paper_dtype}
    modalities = data["model"]["modalities"]
    # Image and video: the YAML's CLIP settings (penultimate layer, no CLS, 4 frames pooled 2x) on a
    # tiny CLIP vision tower from a local folder instead of CLIP-ViT-L/14-336 from the hub.
    for modality in ("image", "video"):
        modalities[modality]["encoder_name_or_path"] = str(clip_dir)
        modalities[modality]["preprocess"]["image_size"] = TINY_CLIP_VISION["image_size"]
    # Audio (Whisper-large-v3 + a 12-layer Q-Former) and point cloud (8192 points): the tiny built-in
    # spectrogram and point-patch encoders; the points keep their colour (in_channels 6) as Cap3D's do.
    modalities["audio"] = copy.deepcopy(TINY_MODALITIES["audio"])
    modalities["point_cloud"] = copy.deepcopy(TINY_MODALITIES["point_cloud"])
    modalities["point_cloud"]["encoder_config"]["in_channels"] = 6
    modalities["point_cloud"]["preprocess"]["use_color"] = True
    data["output_dir"] = str(root / f"out-{name}")
    data["order"] = PAPER_ORDERS[data["order"]][:2]  # two stages: the second one merges
    for phase in ("connector_pretrain", "instruction_tuning", "realign"):
        # Two steps: the paper's 3 % warm-up gives the first step a learning rate of 0.
        data["training"][phase].update({"max_steps": 2, "per_device_train_batch_size": 4})
    data["training"]["instruction_tuning"].update({"lora_r": 4, "lora_alpha": 8})
    data["methods"] = [m for m in data["methods"] if m["name"] == "MERA (10%)"]
    # No API key here: the offline judge instead of GPT-4o mini.
    data["evaluation"].update(
        {"judge": "exact_match", "judge_kwargs": {}, "max_new_tokens": 3, "batch_size": 4}
    )
    path = root / f"{name}-tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def load_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def only(output_dir: Path, prefix: str) -> Path:
    (found,) = [p for p in (output_dir / "checkpoints").glob(f"{prefix}-*") if (p / "phase.json").is_file()]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_yaml_trains_every_phase_on_a_tiny_model(name, in_paper_root):
    from trainers.runner import run_curriculum

    run = load_run_config(tiny_paper_run(name, in_paper_root))
    first, second = run.order
    run_curriculum(run, progress=False)

    out = Path(run.output_dir)
    # Raw scores only (no experts to compute Relative Gains against): every seen test set was scored.
    (mera,) = json.loads((out / "results.json").read_text())["records"]
    scores = [stage["scores"] for stage in mera["stages"]]
    assert [sorted(s) for s in scores] == [[first], sorted([first, second])]
    assert all(set(s[m]) == {"caption", "qa"} for s in scores for m in s)

    for prefix in (f"pretrain-{first}", f"it-{first}", f"pretrain-{second}"):
        only(out, prefix)
    # Stage 1 has no merged LLM to realign to: the paper's MERA stage 1 is the expert (Table 11).
    assert not list((out / "checkpoints").glob(f"realign-{first}-*"))
    vanilla, merged = load_state(only(out, f"it-{second}")), load_state(only(out, f"merge-{second}"))
    realigned = load_state(only(out, f"realign-{second}"))
    llm = [k for k in merged if "language_model." in k]
    # The merge moved the LLM off θ₂,vanilla; realignment moved every seen connector and nothing else.
    assert any(not torch.equal(merged[k], vanilla[k]) for k in llm)
    for key in merged:
        if key.startswith("model.connectors."):
            continue
        assert torch.equal(realigned[key], merged[key]), key
    assert all(realigned[k].dtype == torch.bfloat16 for k in llm)  # the frozen LLM stays in half precision
    for modality in (first, second):
        connector = [k for k in merged if k.startswith(f"model.connectors.{modality}.")]
        # Trained in float32 (mixed precision): saved so, and every tensor moved.
        assert connector and all(realigned[k].dtype == torch.float32 for k in connector), modality
        assert all(not torch.equal(realigned[k], merged[k].float()) for k in connector), modality
