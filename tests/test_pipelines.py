"""transformers' own clients on a stage folder: `pipeline("image-text-to-text" | "any-to-any")` and
the Auto classes VLM users load with. Every pipeline answer is checked against greedy `generate`
through `AutoModelFor*` + `AutoProcessor` on the same inputs."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoProcessor,
    TextIteratorStreamer,
    pipeline,
)

import hf_mera  # noqa: F401  (registers the Auto classes)
from hf_mera import AnyModalityLlavaForConditionalGeneration, AnyModalityLlavaModel

MAX_NEW_TOKENS = 6
QUESTION = "what color is the shape ?"


def save_lively_checkpoint(folder, tokenizer, modalities) -> str:
    """A tiny checkpoint whose greedy answers depend on its input. Plain random init answers every
    input with the same token, which would make "the pipeline's answer equals generate's" hold
    whatever the pipeline fed the model; weights drawn at 3× the usual scale do not."""
    from conftest import make_tiny_model

    model, processor = make_tiny_model(tokenizer, modalities=modalities)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2 and not name.startswith("model.encoders"):
                param.copy_(3 * torch.randn(param.shape, generator=generator) / param.shape[-1] ** 0.5)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def image_checkpoint(tmp_path_factory, tiny_tokenizer):
    return save_lively_checkpoint(tmp_path_factory.mktemp("image"), tiny_tokenizer, ("image",))


@pytest.fixture(scope="module")
def four_checkpoint(tmp_path_factory, tiny_tokenizer):
    modalities = ("image", "video", "audio", "point_cloud")
    return save_lively_checkpoint(tmp_path_factory.mktemp("four"), tiny_tokenizer, modalities)


def chat(*media_parts, text=QUESTION):
    return [{"role": "user", "content": [*media_parts, {"type": "text", "text": text}]}]


class Reference:
    """Greedy `generate` through an Auto class and `AutoProcessor`, as the model card shows it."""

    def __init__(self, auto_class, folder):
        self.model = auto_class.from_pretrained(folder).eval()
        self.processor = AutoProcessor.from_pretrained(folder)

    def ids(self, messages) -> torch.Tensor:
        inputs = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        with torch.inference_mode():
            return self.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)[0]

    def answer(self, messages) -> str:
        inputs = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        new = self.ids(messages)[inputs["input_ids"].shape[1] :]
        return self.processor.decode(new, skip_special_tokens=True)


def answers(pipe, messages, **kwargs) -> list[str]:
    out = pipe(text=messages, max_new_tokens=MAX_NEW_TOKENS, return_full_text=False, **kwargs)
    rows = out if isinstance(messages[0], list) else [out]
    return [row[0]["generated_text"].strip() for row in rows]


def test_auto_classes_load_the_generating_model(four_checkpoint):
    for auto_class in (AutoModelForImageTextToText, AutoModelForMultimodalLM, AutoModelForCausalLM):
        assert type(auto_class.from_pretrained(four_checkpoint)) is AnyModalityLlavaForConditionalGeneration
    assert type(AutoModel.from_pretrained(four_checkpoint)) is AnyModalityLlavaModel


def test_image_text_to_text_pipeline_equals_greedy_generate(image_checkpoint, media_files):
    from PIL import Image

    reference = Reference(AutoModelForImageTextToText, image_checkpoint)
    pipe = pipeline("image-text-to-text", model=image_checkpoint)
    image = media_files["image0"]
    chats = [
        chat({"type": "image", "path": image}),
        chat({"type": "image", "url": media_files["image1"]}),  # a URL-less local file
        chat({"type": "image", "image": Image.open(image)}),  # an image in memory
        chat(
            {"type": "image", "image": np.asarray(Image.open(media_files["image1"]))}, text="how many beeps ?"
        ),
    ]
    expected = [reference.answer(c) for c in chats]
    assert len(set(expected)) > 1, "the checkpoint answers every input alike: the comparison is void"
    assert all(expected), expected
    # One chat at a time: the same token ids as generate (prompt included), and the same text.
    for messages in chats:
        (row,) = pipe(text=messages, max_new_tokens=MAX_NEW_TOKENS, return_tensors=True)
        assert torch.equal(row["generated_token_ids"], reference.ids(messages))
    assert [answers(pipe, c)[0] for c in chats] == expected
    # Batched: the pipeline pads the rows on the left and the model stacks their media.
    assert answers(pipe, chats, batch_size=len(chats)) == expected
    # max_new_tokens bounds the answer.
    short = pipe(text=chats[0], max_new_tokens=2, return_tensors=True)[0]["generated_token_ids"]
    assert torch.equal(short, reference.ids(chats[0])[: len(short)])
    assert len(short) == len(reference.ids(chats[0])) - MAX_NEW_TOKENS + 2


def test_image_text_to_text_plain_prompt_with_images(image_checkpoint, media_files):
    """The pipeline's non-chat form, `pipe(images=..., text=...)`: the image goes before the text
    (its placeholder added), the prompt is not chat-formatted, as transformers does it."""
    reference = Reference(AutoModelForImageTextToText, image_checkpoint)
    pipe = pipeline("image-text-to-text", model=image_checkpoint)
    image = media_files["image0"]
    (row,) = pipe(images=image, text=QUESTION, max_new_tokens=MAX_NEW_TOKENS, return_full_text=False)
    inputs = reference.processor(text=f"<image>\n{QUESTION}", media=[{"modality": "image", "path": image}])
    ids = reference.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    new = ids[0, inputs["input_ids"].shape[1] :]
    assert row["generated_text"].strip() == reference.processor.decode(new, skip_special_tokens=True)


def test_any_to_any_pipeline_four_modalities_equals_greedy_generate(four_checkpoint, media_files):
    from PIL import Image

    reference = Reference(AutoModelForMultimodalLM, four_checkpoint)
    pipe = pipeline("any-to-any", model=four_checkpoint)
    frames = np.stack([np.asarray(Image.open(media_files["image0"]).resize((32, 32)))] * 4)
    cloud = np.load(media_files["point_cloud0"])
    import soundfile as sf

    wave, rate = sf.read(media_files["audio1"], dtype="float32")
    assert rate == 16000  # a bare waveform is read at the processor's sampling rate
    chats = [
        chat({"type": "image", "path": media_files["image0"]}),
        chat({"type": "video", "path": media_files["video0"]}),
        chat({"type": "audio", "path": media_files["audio0"]}, text="how many beeps ?"),
        chat({"type": "point_cloud", "path": media_files["point_cloud0"]}),
        chat({"type": "video", "video": frames}, {"type": "audio", "audio": wave}),  # arrays in memory
        chat(
            {"type": "point_cloud", "point_cloud": cloud},
            {"type": "image", "image": Image.open(media_files["image1"])},
        ),  # fmt: skip
        chat(
            *({"type": m, "path": media_files[f"{m}0"]} for m in ("image", "video", "audio", "point_cloud")),
            text="describe the input .",
        ),
        chat(text="how many beeps ?"),  # text alone
    ]
    expected = [reference.answer(c) for c in chats]
    assert len(set(expected)) > 2, expected
    for messages in chats:
        (row,) = pipe(text=messages, max_new_tokens=MAX_NEW_TOKENS, return_tensors=True)
        assert torch.equal(row["generated_token_ids"], reference.ids(messages))
    assert [answers(pipe, c)[0] for c in chats] == expected
    # Rows of different modalities, and one without media, batched together.
    assert answers(pipe, chats, batch_size=4) == expected


def test_pipeline_streams_the_answer(four_checkpoint, media_files):
    reference = Reference(AutoModelForMultimodalLM, four_checkpoint)
    pipe = pipeline("any-to-any", model=four_checkpoint)
    messages = chat({"type": "audio", "path": media_files["audio0"]}, {"type": "image", "path": media_files["image1"]})  # fmt: skip
    streamer = TextIteratorStreamer(pipe.tokenizer, skip_prompt=True, skip_special_tokens=True)
    worker = threading.Thread(
        target=pipe, kwargs={"text": messages, "max_new_tokens": MAX_NEW_TOKENS, "generate_kwargs": {"streamer": streamer}}
    )  # fmt: skip
    worker.start()
    pieces = list(streamer)
    worker.join()
    assert len([p for p in pieces if p.strip()]) >= 2  # streamed piece by piece
    assert "".join(pieces).strip() == reference.answer(messages)


def test_processor_media_arguments_and_their_errors(four_checkpoint, media_files):
    processor = AutoProcessor.from_pretrained(four_checkpoint)
    image, clip = media_files["image0"], media_files["audio0"]
    # images= / audio= fill the placeholders in order; a prompt without placeholders gets them first.
    batch = processor(
        text=["<audio> <image> what ?", "how many beeps ?"], images=[[image], []], audio=[clip, [clip, clip]]
    )
    assert processor.tokenizer.padding_side == "left"
    assert {k: tuple(v.shape[:1]) for k, v in batch["modality_values"].items()} == {
        "audio": (3,),
        "image": (1,),
    }
    placeholder = processor.token_id("audio")
    assert [int((row == placeholder).sum()) for row in batch["input_ids"]] == [3, 6]  # 3 tokens per clip
    # A batched chat renders like each chat alone.
    chats = [chat({"type": "image", "path": image}), chat(text="how many beeps ?")]
    assert processor.apply_chat_template(chats, add_generation_prompt=True) == [
        processor.apply_chat_template(c, add_generation_prompt=True) for c in chats
    ]
    assert processor(text="no media")["modality_values"] == {}  # rows with and without media batch
    with pytest.raises(ValueError, match="URLs are not fetched"):
        processor.apply_chat_template(
            chat({"type": "image", "url": "https://example.com/cat.png"}), tokenize=True
        )
    with pytest.raises(ValueError, match=r"a 'video' part needs its media under 'path', 'url' or 'video'"):
        processor.apply_chat_template(chat({"type": "video"}), tokenize=True)
    with pytest.raises(ValueError, match="Unknown modality 'depth'"):
        processor.apply_chat_template(chat({"type": "depth", "path": image}), tokenize=True)
    with pytest.raises(ValueError, match="more image placeholders than image inputs"):
        processor(text="<image> <image> two ?", images=image)
    with pytest.raises(ValueError, match="more media than placeholders"):
        processor(text="<image> one ?", images=[image, image])


def card_tags() -> dict[str, list[tuple[str, ...]]]:
    """Every pipeline tag a stage card can declare, with the modality sets that declare it: each
    registered modality alone, and more than one."""
    from hf_mera.modalities import MODALITY_REGISTRY
    from model_cards.writer import _pipeline_tag

    names = list(MODALITY_REGISTRY)
    tags: dict[str, list[tuple[str, ...]]] = {}
    for seen in [(name,) for name in names] + [tuple(names[:2]), tuple(names)]:
        tags.setdefault(_pipeline_tag(list(seen)), []).append(seen)
    return tags


def test_every_pipeline_tag_a_card_declares_loads_with_its_pipeline(tmp_path, tiny_tokenizer, media_files):
    from transformers.pipelines import SUPPORTED_TASKS

    tags = card_tags()
    assert set(tags) == {"image-text-to-text", "any-to-any"}
    for tag, modality_sets in tags.items():
        assert tag in SUPPORTED_TASKS
        for seen in modality_sets:
            folder = save_lively_checkpoint(tmp_path / "-".join(seen), tiny_tokenizer, seen)
            pipe = pipeline(tag, model=folder)
            parts = [{"type": m, "path": media_files[f"{m}0"]} for m in seen]
            (row,) = pipe(text=chat(*parts), max_new_tokens=2, return_full_text=False)
            assert row["generated_text"].strip(), (tag, seen)


def test_the_card_snippet_runs_and_both_ways_agree(
    tmp_path, tiny_tokenizer, media_files, monkeypatch, capsys
):
    """The card's "How to load" block, run as written in the folder above the stage: the pipeline
    and the Auto-class way print the same answer."""
    import json
    import shutil

    from hf_mera.continual.curriculum import load_run_config
    from model_cards import write_stage_card

    for modality, seen in (("image", ["image"]), ("audio", ["image", "audio"])):
        stage = tmp_path / f"stage-{len(seen)}-{modality}"
        save_lively_checkpoint(stage, tiny_tokenizer, tuple(seen))
        info = {"method": "MERA (10%)", "method_type": "mera", "stage": len(seen), "modality": modality,
                "order": ["image", "audio"], "seen": seen, "scores": {}, "benchmark_hash": "h"}  # fmt: skip
        (stage / "stage.json").write_text(json.dumps(info))
        card = write_stage_card(stage, info, load_run_config("quickstart", {"order": ["image", "audio"]}))
        code = re.search(r"```python\n(.*?)\n```", card.read_text(), re.S).group(1)
        example = re.search(r'"path": "([^"]+)"', code).group(1)  # the card's example file name
        shutil.copy(media_files[f"{modality}0"], tmp_path / example)
        monkeypatch.chdir(tmp_path)
        exec(compile(code, str(card), "exec"), {})
        printed = capsys.readouterr().out.strip().splitlines()
        assert len(printed) == 2 and printed[0].strip() == printed[1].strip() != "", printed
