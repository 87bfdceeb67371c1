"""Data hygiene (issue #17): no training phase reads a test text. The tokenizer may know the test
vocabulary (a pretrained one does); the tiny LLM's text pre-training reads the train split only."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from hf_mera.continual.curriculum import BackboneConfig, DataSection
from trainers import backbone as backbone_module
from trainers.data_sources import load_data_source

MODALITIES = ["image", "audio"]
SIZES = {"caption_train": 6, "caption_test": 6, "qa_train": 8, "qa_test": 8, "cross_test": 8}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    section = DataSection(embedded=SIZES, root=str(tmp_path_factory.mktemp("embedded") / "b"))
    return load_data_source(section, MODALITIES, seed=0)


def split_texts(source, split_sets) -> set[str]:
    """Every question line and reference of the given sets, as the benchmark's text corpus has them."""
    texts = set()
    for tasks in split_sets.values():
        for dataset in tasks.values():
            for messages, references in zip(dataset["messages"], dataset["references"]):
                texts.update(references)
                texts.update(m["content"].strip() for m in messages[-1:])  # the answer turn
    return texts


def test_training_texts_are_the_train_split_only(source):
    training = set(source.training_texts)
    test_only = split_texts(source, source.test_sets) - split_texts(source, source.train_sets)
    assert test_only, "the tiny benchmark should have some text that only its test split has"
    assert not training & test_only
    assert split_texts(source, source.train_sets) <= set(source.texts)
    assert set(source.training_texts) < set(source.texts)  # the vocabulary knows more than training


def test_tiny_llama_backbone_pretrains_on_training_texts_only(source, monkeypatch):
    seen = {}

    def spy(model, tokenizer, texts, **kwargs):
        seen["corpus"] = list(texts)
        seen["vocabulary"] = set(tokenizer.get_vocab())
        return []

    monkeypatch.setattr("hf_mera.models.tiny_lm.pretrain_text_lm", spy)
    workspace = SimpleNamespace(
        run=SimpleNamespace(model=SimpleNamespace(backbone=BackboneConfig(text_pretrain_steps=1)), seed=0),
        data=source,
        progress=False,
    )
    backbone_module.TinyLlamaBackbone().build(workspace)
    assert seen["corpus"] == list(source.training_texts)
    test_words = {w for t in source.texts for w in re.findall(r"[a-z]+", t)}
    assert test_words <= seen["vocabulary"]  # the tokenizer still knows every split's words
    # Both corpora name the backbone phase: changing what it trains on retrains it.
    described = backbone_module.TinyLlamaBackbone().describe(workspace)
    assert set(described) == {"texts", "training_texts"} and described["texts"] != described["training_texts"]
