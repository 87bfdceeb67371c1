"""The tiny LLM's text-only instruction phase (#17): train-split items described in words, answered in
the stages' chat format; no val or test text reaches any training phase (a canary and a spy)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from hf_mera.continual.curriculum import BackboneConfig, DataSection
from hf_mera.data.embedded import EmbeddedBenchmark, EmbeddedSizes, build_embedded_benchmark
from hf_mera.models import tiny_lm
from trainers.backbone import TinyLlamaBackbone
from trainers.data_sources import load_data_source

SIZES = {
    "caption_train": 3,
    "qa_train": 5,
    "caption_val": 2,
    "qa_val": 3,
    "caption_test": 2,
    "qa_test": 3,
    "cross_test": 0,
}
CANARY_Q, CANARY_A = "is it a zebra?", "okapi"


def test_described_conversations_read_only_their_split(tmp_path, monkeypatch):
    bench = build_embedded_benchmark(
        tmp_path / "b", sizes=EmbeddedSizes(**SIZES), modalities=("audio",), progress=False
    )
    bench = EmbeddedBenchmark(bench.root)  # nothing loaded yet
    read = []
    original = EmbeddedBenchmark._load
    monkeypatch.setattr(
        EmbeddedBenchmark, "_load", lambda self, m, t, s: read.append(s) or original(self, m, t, s)
    )
    turns = bench.described_conversations("train")
    assert set(read) == {"train"} and len(turns) == SIZES["caption_train"] + SIZES["qa_train"]
    qa = bench.dataset("audio", "qa", "train")
    metas = bench.metadata("audio", "qa", "train")
    for (user, answer), row, meta in zip(turns[SIZES["caption_train"] :], qa, metas):
        description, question = user.split("\n")
        assert (
            question == row["messages"][0]["content"].split("\n")[-1]
            and answer == row["messages"][1]["content"]
        )
        # The description says what the media show: the answer is in it (the QA's attribute value).
        assert meta["attributes"][meta["question_type"]] in description.split() or "beep" in description


def test_no_val_or_test_text_reaches_a_training_phase(tmp_path, monkeypatch):
    root = tmp_path / "b"
    build_embedded_benchmark(
        root, sizes=EmbeddedSizes(**SIZES), modalities=("audio", "point_cloud"), progress=False
    )
    # A canary question and answer in every val and test QA row.
    for path in list(root.glob("annotations/*-qa-val.jsonl")) + list(
        root.glob("annotations/*-qa-test.jsonl")
    ):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for record in records:
            user = record["sample"]["messages"][0]
            user["content"] = user["content"].rsplit("\n", 1)[0] + "\n" + CANARY_Q
            record["sample"]["messages"][1]["content"] = CANARY_A
            record["sample"]["references"] = [CANARY_A]
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    data = load_data_source(
        DataSection(source="embedded", root=str(root), embedded=SIZES), ["audio", "point_cloud"], 0
    )
    assert any("zebra" in t for t in data.texts)  # the vocabulary may know it: the canary is in place
    corpora = {}
    monkeypatch.setattr(
        tiny_lm, "pretrain_text_lm", lambda m, t, texts, **kw: corpora.setdefault("pretrain", texts)
    )
    monkeypatch.setattr(
        tiny_lm, "instruction_tune_text_lm", lambda m, t, turns, **kw: corpora.setdefault("instruct", turns)
    )
    cfg = BackboneConfig(hidden_size=16, num_layers=1, num_heads=2, text_instruct_steps=5)
    workspace = SimpleNamespace(
        run=SimpleNamespace(model=SimpleNamespace(backbone=cfg), seed=0), data=data, progress=False
    )
    TinyLlamaBackbone().build(workspace)
    assert corpora["pretrain"] and corpora["instruct"]
    seen = json.dumps(corpora)
    assert "zebra" not in seen and CANARY_A not in seen


def test_answer_only_labels_in_the_chat_format():
    tokenizer = tiny_lm.build_word_level_tokenizer(["a red cube\nwhat color is it?", "red"])
    ids, labels = tiny_lm.encode_conversation(tokenizer, "a red cube\nwhat color is it?", "red")
    answer = [tokenizer.decode([i]) for i, label in zip(ids, labels) if label != -100]
    assert answer == ["red", tokenizer.eos_token]
    assert tokenizer.decode(ids[: labels.index(ids[-2])]).split()[0] == "user"


@pytest.mark.slow
def test_instruction_phase_teaches_answering_from_descriptions():
    turns = [(f"a {c} {s}\nwhat color is it?", c) for c in ("red", "blue", "green") for s in ("cube", "ball")]
    turns += [
        (f"a {c} {s}\nwhat shape is it?", s) for c in ("red", "blue", "green") for s in ("cube", "ball")
    ]
    tokenizer = tiny_lm.build_word_level_tokenizer([u for u, _ in turns])
    model = tiny_lm.build_tiny_llama(tokenizer, 32, 2, 2, seed=0)
    before = tiny_lm.described_answer_accuracy(model, tokenizer, turns, max_new_tokens=3)
    tiny_lm.instruction_tune_text_lm(
        model, tokenizer, turns, steps=150, learning_rate=3e-3, batch_size=8, progress=False
    )
    after = tiny_lm.described_answer_accuracy(model, tokenizer, turns, max_new_tokens=3)
    assert before < 0.5 and after == 1.0
