"""Batched greedy generation and task routing, on a tiny fake model + processor with the contract's API.

The fake model answers with the last word of the user turn, so every prediction can be checked exactly;
it also asserts what a real decoder-only model relies on (left padding, greedy decoding).
"""

import pytest
import torch

from hf_mera.evaluation import (
    ExactMatchJudge,
    TaskResult,
    compute_cider,
    evaluate_task,
    evaluate_tasks,
    generate_predictions,
    prompt_messages,
    score_predictions,
)

PAD, EOS = 0, 1


class FakeTokenizer:
    def __init__(self):
        self.vocab = {"<pad>": PAD, "<eos>": EOS}
        self.pad_token_id = PAD
        self.padding_side = "right"

    def encode(self, text):
        return [self.vocab.setdefault(word, len(self.vocab)) for word in text.split()]

    def decode_ids(self, ids, skip_special_tokens):
        words = {i: w for w, i in self.vocab.items()}
        return " ".join(words[i] for i in ids if not (skip_special_tokens and i in (PAD, EOS)))


class Inputs(dict):
    def to(self, device):
        self.moved_to = device
        return self


class FakeProcessor:
    def __init__(self):
        self.tokenizer = FakeTokenizer()
        self.calls, self.templates = [], []

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=False):
        self.templates.append((messages, add_generation_prompt, tokenize))
        text = " ".join(f"{m['role']}: {m['content']}" for m in messages)
        return text + (" assistant:" if add_generation_prompt else "")

    def __call__(self, text, media=None, return_tensors=None, padding=False):
        self.calls.append({"text": text, "media": media, "padding_side": self.tokenizer.padding_side})
        rows = [self.tokenizer.encode(t) for t in text]
        width = max(len(r) for r in rows)
        ids, mask = [], []
        for row in rows:
            pad = [PAD] * (width - len(row))
            left = self.tokenizer.padding_side == "left"
            ids.append(pad + row if left else row + pad)
            mask.append([0] * len(pad) + [1] * len(row) if left else [1] * len(row) + [0] * len(pad))
        inputs = Inputs(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
        if media:
            count = sum(len(m) for m in media)
            inputs["modality_values"] = {"image": torch.zeros(count, 3)}
        return inputs

    def batch_decode(self, sequences, skip_special_tokens=False):
        return [" " + self.tokenizer.decode_ids(s.tolist(), skip_special_tokens) + " " for s in sequences]


class FakeModel(torch.nn.Module):
    """Answers the last word before "assistant:", then EOS and padding (stripped when decoding)."""

    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer = tokenizer
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls = []
        self.train()

    @property
    def device(self):
        return self.weight.device

    @property
    def dtype(self):
        return self.weight.dtype

    def generate(self, input_ids, attention_mask, max_new_tokens, do_sample, **kwargs):
        assert not self.training and not torch.is_grad_enabled()
        assert do_sample is False
        assert bool(attention_mask[:, -1].all()), "prompts must be left-padded"
        self.calls.append({"max_new_tokens": max_new_tokens, **kwargs, "batch": input_ids.shape[0]})
        answer_marker = self.tokenizer.vocab["assistant:"]
        new = []
        for row in input_ids.tolist():
            answer = row[row.index(answer_marker) - 1]
            new.append(([answer, EOS] + [PAD] * max_new_tokens)[:max_new_tokens])
        return torch.cat([input_ids, torch.tensor(new)], dim=1)


def _sample(i, task="qa"):
    answer = f"word{i}"
    return {
        "id": f"s{i}",
        "modality": "image",
        "task": task,
        "media": [{"modality": "image", "path": f"img{i}.png"}],
        "messages": [
            {"role": "user", "content": "<image> " + "filler " * (i % 3) + f"question {answer}"},
            {"role": "assistant", "content": "not part of the prompt"},
        ],
        "references": [answer] if task == "qa" else [f"a {answer}", answer, f"the {answer} here"],
        "question": f"question {answer}",
    }


@pytest.fixture
def fake():
    processor = FakeProcessor()
    return FakeModel(processor.tokenizer), processor


def test_generate_predictions_batches_left_pads_and_decodes_new_tokens(fake):
    model, processor = fake
    samples = [_sample(i) for i in range(5)]
    predictions = generate_predictions(
        model, processor, samples, batch_size=2, max_new_tokens=4, progress=False
    )
    assert predictions == [f"word{i}" for i in range(5)]
    assert [c["batch"] for c in model.calls] == [2, 2, 1]
    assert all(c["max_new_tokens"] == 4 and c["pad_token_id"] == PAD for c in model.calls)
    assert all(call["padding_side"] == "left" for call in processor.calls)
    assert processor.calls[0]["media"] == [samples[0]["media"], samples[1]["media"]]
    messages, add_generation_prompt, tokenize = processor.templates[0]
    assert messages == samples[0]["messages"][:1] and add_generation_prompt and not tokenize
    # State is restored for whoever uses the model and processor next.
    assert processor.tokenizer.padding_side == "right"
    assert model.training


def test_generate_predictions_accepts_a_datasets_dataset(fake):
    datasets = pytest.importorskip("datasets")
    model, processor = fake
    dataset = datasets.Dataset.from_list([_sample(i) for i in range(3)])
    assert generate_predictions(model, processor, dataset, batch_size=8, progress=False) == [
        "word0",
        "word1",
        "word2",
    ]


def test_generate_predictions_with_feature_lookup_passes_features_not_media(fake):
    model, processor = fake
    samples = [_sample(i) for i in range(3)]
    samples[1]["media"] = samples[1]["media"] * 2  # two images in the second sample

    def lookup(sample):
        n = len(sample["media"])
        return {"image": torch.full((n, 4, 8), float(sample["id"][1:]), dtype=torch.float64)}

    predictions = generate_predictions(
        model, processor, samples, batch_size=3, progress=False, feature_lookup=lookup
    )
    assert predictions == ["word0", "word1", "word2"]
    assert processor.calls[0]["media"] is None
    features = model.calls[0]["modality_features"]["image"]
    assert features.shape == (4, 4, 8)
    assert features.dtype == torch.float32  # cast to the model's dtype
    assert features[:, 0, 0].tolist() == [0.0, 1.0, 1.0, 2.0]  # items stacked row by row


def test_generate_predictions_restores_state_when_generation_fails(fake):
    model, processor = fake

    def broken_generate(**kwargs):
        raise RuntimeError("out of memory")

    model.generate = broken_generate
    with pytest.raises(RuntimeError, match="out of memory"):
        generate_predictions(model, processor, [_sample(0)], progress=False)
    assert processor.tokenizer.padding_side == "right"
    assert model.training


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"do_sample": True}, "do_sample"),
    ],
)
def test_generate_predictions_rejects_bad_arguments(fake, kwargs, message):
    model, processor = fake
    with pytest.raises(ValueError, match=message):
        generate_predictions(model, processor, [_sample(0)], progress=False, **kwargs)


def test_prompt_messages_drops_only_the_final_assistant_turn():
    sample = _sample(0)
    assert prompt_messages(sample) == sample["messages"][:1]
    assert prompt_messages({"messages": sample["messages"][:1]}) == sample["messages"][:1]
    with pytest.raises(ValueError, match="no messages"):
        prompt_messages({"id": "x", "messages": []})
    with pytest.raises(ValueError, match="only an assistant turn"):
        prompt_messages({"id": "x", "messages": [{"role": "assistant", "content": "hi"}]})


def test_evaluate_task_routes_qa_to_accuracy_and_captions_to_cider(fake):
    model, processor = fake
    dataset = [_sample(i, "qa") for i in range(4)] + [_sample(i, "caption") for i in range(4, 10)]
    dataset[1]["references"] = ["something else"]

    qa = evaluate_task(model, processor, dataset, "qa", judge=ExactMatchJudge(), progress=False)
    assert isinstance(qa, TaskResult)
    assert (qa.metric, qa.score, qa.judge_name) == ("accuracy", 0.75, "exact_match")
    assert qa.per_item == [True, False, True, True]

    caption = evaluate_task(model, processor, dataset, "caption", progress=False)
    rows = dataset[4:]
    expected = compute_cider([f"word{i}" for i in range(4, 10)], [row["references"] for row in rows])
    assert caption.metric == "cider" and caption.predictions == [f"word{i}" for i in range(4, 10)]
    assert caption.score == pytest.approx(expected.score) and caption.score > 0

    both = evaluate_tasks(model, processor, dataset, progress=False)
    assert set(both) == {"qa", "caption"} and both["qa"].score == qa.score


def test_task_routing_errors():
    with pytest.raises(ValueError, match="Unknown task 'retrieval'"):
        score_predictions("retrieval", ["a"], [["a"]])
    with pytest.raises(ValueError, match="no rows with task 'caption'"):
        evaluate_task(None, None, [_sample(0, "qa")], "caption")
    cross = score_predictions("cross", ["A"], [["a"]], ["which option?"])
    assert (cross.metric, cross.score) == ("accuracy", 1.0)
