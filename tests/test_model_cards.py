"""Model cards of published stages: metadata, body, and parse-back with `ModelCard.load`."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from huggingface_hub import ModelCard

from hf_mera.continual.curriculum import load_run_config
from model_cards import MERA_CITATION, write_stage_card

HASH = "a1b2c3d4e5f6"
ORDER = ["image", "audio"]
EXPERTS = {"image": {"caption": 0.5, "qa": 0.8}, "audio": {"caption": 0.2, "qa": 0.4}}
# MERA after stage 1 and stage 2 (image then audio).
MERA = [
    {"image": {"caption": 0.5, "qa": 0.8}},
    {"image": {"caption": 0.4, "qa": 0.8}, "audio": {"caption": 0.1, "qa": 0.4}},
]


def publish(output_dir: Path, method: str, method_type: str, stage: int, modality: str, seen, scores):
    """A published stage folder as `save_stage` leaves it (the weights do not matter to the card)."""
    from trainers.methods import METHODS

    trainer = METHODS.get(method_type)
    slug = re.sub(r"[^a-z0-9]+", "-", method.lower()).strip("-")
    folder = output_dir / slug / f"stage-{stage}-{modality}"
    folder.mkdir(parents=True)
    info = {
        "method": method,
        "method_type": method_type,
        "reference": trainer.reference,
        "realign": trainer.realign,
        "stage": stage,
        "modality": modality,
        "order": ORDER,
        "seen": list(seen),
        "checkpoint": "phase-x",
        "scores": scores,
        "benchmark_hash": HASH,
    }
    (folder / "stage.json").write_text(json.dumps(info))
    return folder, info


@pytest.fixture
def run():
    return load_run_config("quickstart", {"order": ORDER})


@pytest.fixture
def output_dir(tmp_path):
    for modality in ORDER:
        publish(tmp_path, "Experts", "experts", 1, modality, [modality], {modality: EXPERTS[modality]})
    publish(tmp_path, "MERA (10%)", "mera", 1, "image", ["image"], MERA[0])
    return tmp_path


def final_card(output_dir: Path, run) -> tuple[Path, ModelCard]:
    folder, info = publish(output_dir, "MERA (10%)", "mera", 2, "audio", ORDER, MERA[1])
    path = write_stage_card(folder, info, run)
    return path, ModelCard.load(path)


def test_final_stage_card_metadata_parses_back(output_dir, run):
    path, card = final_card(output_dir, run)
    assert path.name == "README.md"
    data = card.data
    assert data.library_name == "hf_mera"
    assert data.pipeline_tag == "any-to-any"  # two input modalities beside text
    assert data.license == "apache-2.0"
    assert data.datasets == ["hf_mera-embedded-benchmark"]
    assert {"hf_mera", "mera", "image", "audio"} <= set(data.tags)
    assert data.base_model is None  # the library's tiny Llama has no hub id


def test_card_body_order_method_yaml_hash_loading_citation(output_dir, run):
    _, card = final_card(output_dir, run)
    text = card.text
    # Modalities in the curriculum's order, both learned.
    assert re.search(r"\| 1 \| image \| learned \|\n\| 2 \| audio \| learned \(this stage\) \|", text)
    assert "**MERA (10%)** (`mera`)" in text
    assert "| replay_ratio | `0.1` |" in text
    # The exact curriculum YAML: the fenced block loads back to the run's configuration.
    block = re.search(r"```yaml\n(.*?)\n```", text, re.S).group(1)
    assert yaml.safe_load(block) == json.loads(json.dumps(asdict(run)))
    assert f"Benchmark content hash: `{HASH}`" in text
    assert 'pipeline("any-to-any", model=checkpoint)' in text  # the card's tag, loaded as it says
    assert "AutoModelForMultimodalLM.from_pretrained(" in text and "AutoProcessor.from_pretrained(" in text
    assert "trust_remote_code" in text  # says it is not needed
    assert MERA_CITATION in text


def test_scores_and_relative_gains_per_stage(output_dir, run):
    _, card = final_card(output_dir, run)
    rows = [
        line
        for line in card.text.splitlines()
        if line.startswith("| 1 (image)") or line.startswith("| 2 (audio)")
    ]
    assert len(rows) == 2, rows
    # Columns: image caption, image qa, audio caption, audio qa, RG image, RG audio, Bw RG, Fw RG.
    stage1 = [c.strip() for c in rows[0].strip("|").split("|")]
    stage2 = [c.strip() for c in rows[1].strip("|").split("|")]
    # Stage 1's Backward RG is its own Relative Gain^1_1, as in report.md and the paper's Table 2.
    assert stage1[1:] == ["0.5000", "0.8000", "–", "–", "100.0", "–", "100.0", "100.0"]
    # RG image = 100 * (0.4/0.5 + 0.8/0.8) / 2 = 90; RG audio = 100 * (0.1/0.2 + 0.4/0.4) / 2 = 75.
    assert stage2[1:] == ["0.4000", "0.8000", "0.1000", "0.4000", "90.0", "75.0", "90.0", "75.0"]


def test_first_stage_card_and_no_experts_says_na(tmp_path, run):
    folder, info = publish(tmp_path, "MERA (10%)", "mera", 1, "image", ["image"], MERA[0])
    card = ModelCard.load(write_stage_card(folder, info, run))
    assert card.data.pipeline_tag == "image-text-to-text"
    assert "| 2 | audio | not yet (a later stage) |" in card.text
    assert "no Relative Gain could be computed" in card.text
    assert "| 1 (image) | 0.5000 | 0.8000 | n/a | n/a | n/a |" in card.text


def test_stale_stages_of_another_benchmark_are_left_out(output_dir, run):
    stale = output_dir / "mera-10" / "stage-1-image" / "stage.json"
    info = json.loads(stale.read_text())
    stale.write_text(json.dumps({**info, "benchmark_hash": "other", "scores": {"image": {"caption": 9.0}}}))
    _, card = final_card(output_dir, run)
    assert "9.0000" not in card.text and "| 1 (image)" not in card.text


def test_pretrained_backbone_is_the_base_model_and_license_tags_come_from_the_config(tmp_path):
    run = load_run_config("smollm2", {"push_to_hub": {"license": "mit", "tags": ["my-tag"]}})
    method = run.methods[-1]
    folder, info = publish(tmp_path, method.name, method.type, 1, "image", ["image"], MERA[0])
    card = ModelCard.load(write_stage_card(folder, info, run))
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.license == "mit" and "my-tag" in card.data.tags


def test_an_expert_score_of_zero_is_explained(output_dir, run):
    expert = output_dir / "experts" / "stage-1-audio" / "stage.json"
    info = json.loads(expert.read_text())
    expert.write_text(json.dumps({**info, "scores": {"audio": {"caption": 0.0, "qa": 0.4}}}))
    _, card = final_card(output_dir, run)
    assert "The experts scored 0 on audio caption" in card.text
    assert "| 2 (audio) | 0.4000 | 0.8000 | 0.1000 | 0.4000 | 90.0 | n/a | 90.0 | n/a |" in card.text


def test_trainer_hook_writes_the_card_with_the_hub_target(tmp_path):
    from trainers.merge_and_realign import MergeAndRealignTrainer

    run = load_run_config("quickstart", {"order": ORDER, "push_to_hub": {"repo_id": "org/tiny-mera"}})
    folder, info = publish(tmp_path, "MERA (10%)", "mera", 2, "audio", ORDER, MERA[1])
    MergeAndRealignTrainer.on_stage_saved(SimpleNamespace(run=run), folder, info)
    card = ModelCard.load(folder / "README.md")
    # The final stage is pushed to main too, so the snippet loads the repo without a revision.
    assert 'checkpoint = "org/tiny-mera"\n' in card.text
    assert 'pipeline("any-to-any", model=checkpoint)' in card.text
    assert "model = AutoModelForMultimodalLM.from_pretrained(checkpoint)\n" in card.text
    folder1, info1 = publish(tmp_path, "MERA (10%)", "mera", 1, "image", ["image"], MERA[0])
    (tmp_path / "mera-10" / "stage-2-audio").rename(tmp_path / "moved")  # keep stage 1 alone
    MergeAndRealignTrainer.on_stage_saved(SimpleNamespace(run=run), folder1, info1)
    text = ModelCard.load(folder1 / "README.md").text
    assert 'from_pretrained(checkpoint, revision="stage-1-image")' in text
    assert 'pipeline("image-text-to-text", model=checkpoint, revision="stage-1-image")' in text
