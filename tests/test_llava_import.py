"""`AnyModalityLlava.from_llava`: a transformers LLaVA imported exactly (tiny random models, no hub).

Each source is built from configs (a CLIP vision tower and a Llama or Qwen2 text model), saved with
`save_pretrained` together with its `LlavaProcessor` (a word-level tokenizer + `CLIPImageProcessor`)
and imported from the folder, so the path code runs as it does for a hub id.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

# llava-hf's chat templates (llava-1.5-7b-hf; llava-interleave-qwen-0.5b-hf without its video lines).
LLAVA15_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
QWEN_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}"
    "{% endfor %}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WORDS = (
    "user assistant system : what is this ? a red blue green yellow circle square triangle shape the color "
    "colour of it describe image audio point cloud . yes no one two three four sound beeps how many , "
    "small large cone cube sphere moves left right up down"
).split()


def build_tokenizer(family: str, words=WORDS):
    """A word-level tokenizer shaped like the family's: Llama's adds BOS, Qwen2's adds nothing."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    if family == "llama":
        special = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
    else:
        special = {"unk_token": "<unk>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    vocab = {token: i for i, token in enumerate([*special.values(), "<|im_start|>", "<image>"])}
    for word in sorted(set(words)):
        vocab.setdefault(word, len(vocab))
    model = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    model.normalizer = normalizers.Lowercase()
    model.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    if family == "llama":
        model.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=model, **special)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<image>"]})
    return tokenizer


def build_tiny_llava(folder, family: str = "llama", seed: int = 0, words=WORDS):
    """Save a tiny random `LlavaForConditionalGeneration` and its `LlavaProcessor` to `folder`.

    llama: LLaVA-1.5's layout (CLS dropped, layer -2); qwen2: the interleave layout read with the
    "full" strategy (CLS kept) and tied embeddings."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        Qwen2Config,
    )

    tokenizer = build_tokenizer(family, words)
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if family == "llama":
        text_config, strategy, template = LlamaConfig(**text, bos_token_id=1), "default", LLAVA15_TEMPLATE
    else:
        text_config, strategy, template = Qwen2Config(**text, tie_word_embeddings=True), "full", QWEN_TEMPLATE
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    config = LlavaConfig(
        vision_config=vision,
        text_config=text_config,
        image_token_id=image_token_id,
        vision_feature_select_strategy=strategy,
        vision_feature_layer=-2,
        image_seq_length=16 if strategy == "default" else 17,
        tie_word_embeddings=family != "llama",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1,
        chat_template=template,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_image(seed: int, size=(40, 52)) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray((rng.rand(*size, 3) * 255).astype("uint8"))


test_image.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def source(request, tmp_path_factory):
    """(folder, LLaVA model, LlavaProcessor, imported model, its processor) per text family."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from hf_mera import AnyModalityLlava

    folder = build_tiny_llava(tmp_path_factory.mktemp(f"llava-{request.param}"), request.param)
    llava = LlavaForConditionalGeneration.from_pretrained(folder).eval()
    llava_processor = AutoProcessor.from_pretrained(folder)
    model, processor = AnyModalityLlava.from_llava(folder)
    return folder, llava, llava_processor, model, processor


# Two prompts of different lengths, so the batch is padded.
CONVERSATIONS = [("what is this ?", None), ("describe the image , what color is the shape ?", None)]


def both_inputs(llava_processor, processor, images, prompts):
    """The source's inputs (LLaVA parts through LlavaProcessor) and ours (hf_mera's string messages)."""
    source_texts, our_texts = [], []
    for prompt, answer in prompts:
        parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        plain = [{"role": "user", "content": f"<image>\n{prompt}"}]
        if answer is not None:
            parts.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
            plain.append({"role": "assistant", "content": answer})
        generation = answer is None
        source_texts.append(llava_processor.apply_chat_template(parts, add_generation_prompt=generation))
        our_texts.append(processor.apply_chat_template(plain, add_generation_prompt=generation))
    source = llava_processor(images=images, text=source_texts, return_tensors="pt", padding=True)
    ours = processor(text=our_texts, media=[[{"modality": "image", "value": im}] for im in images])
    return source, ours, source_texts, our_texts


def test_processor_gives_the_source_processors_ids_and_pixels(source):
    _, _, llava_processor, _, processor = source
    images = [test_image(0), test_image(1, size=(64, 30))]
    src, ours, source_texts, our_texts = both_inputs(llava_processor, processor, images, CONVERSATIONS)
    # Ours renders the BOS into the text (LlavaProcessor's tokenizer adds it); the ids are the same.
    assert src["input_ids"].tolist() == ours["input_ids"].tolist()
    assert src["attention_mask"].tolist() == ours["attention_mask"].tolist()
    assert torch.equal(src["pixel_values"], ours["modality_values"]["image"])


def test_answers_render_as_the_source_renders_them_plus_the_eos_it_trained_with(source):
    _, _, llava_processor, _, processor = source
    _, _, (source_text,), (our_text,) = both_inputs(
        llava_processor, processor, [test_image(0)], [("what is this ?", "a red circle")]
    )
    tokenizer = llava_processor.tokenizer
    if tokenizer.bos_token:  # Llama: LlavaProcessor's tokenizer adds it, ours renders it
        assert our_text.startswith(tokenizer.bos_token)
        our_text = our_text[len(tokenizer.bos_token) :]
    if tokenizer.eos_token in source_text:  # ChatML ends each turn with <|im_end|>, the EOS: as it is
        assert our_text == source_text
    else:  # LLaVA-1.5's template ends an answer with a space; its training had </s> there
        assert our_text == source_text.replace("a red circle ", f"a red circle{tokenizer.eos_token} ")


def test_logits_are_bitwise_the_sources(source):
    _, llava, llava_processor, model, processor = source
    images = [test_image(2), test_image(3, size=(33, 90))]
    src, ours, _, _ = both_inputs(llava_processor, processor, images, CONVERSATIONS)
    with torch.no_grad():
        expected = llava(**src).logits
        got = model(**ours).logits
    assert got.shape == expected.shape
    assert torch.equal(got, expected)  # the same modules and operations in the same order


def test_greedy_generation_is_the_sources(source):
    _, llava, llava_processor, model, processor = source
    image_id = llava.config.image_token_id
    assert image_id in model.generation_config.suppress_tokens  # a placeholder is never generated
    for seed in range(3):
        src, ours, _, _ = both_inputs(llava_processor, processor, [test_image(10 + seed)], CONVERSATIONS[:1])
        expected = llava.generate(**src, max_new_tokens=8, do_sample=False, suppress_tokens=[image_id])
        got = model.generate(**ours, max_new_tokens=8, do_sample=False)
        assert got.tolist() == expected.tolist()


def test_saved_import_reloads_with_the_auto_classes_and_gives_the_same_logits(source, tmp_path):
    from transformers import AutoModelForCausalLM, AutoProcessor

    _, llava, llava_processor, model, processor = source
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is type(model)
    src, ours, _, _ = both_inputs(
        llava_processor, loaded_processor, [test_image(4), test_image(6)], CONVERSATIONS
    )
    with torch.no_grad():
        assert torch.equal(loaded(**ours).logits, llava(**src).logits)
    assert torch.equal(ours["modality_values"]["image"], src["pixel_values"])
    assert loaded.config.modalities["image"]["encoder_config"]["feature_layer"] == -2


def image_token_id_not_suppressed(llava) -> bool:
    return llava.config.image_token_id not in (llava.generation_config.suppress_tokens or [])


def test_a_model_object_imports_and_shares_its_modules(source):
    from transformers import LlavaForConditionalGeneration

    from hf_mera import AnyModalityLlava

    folder, _, llava_processor, _, _ = source
    llava = LlavaForConditionalGeneration.from_pretrained(folder)
    model, _ = AnyModalityLlava.from_llava(llava, processor=llava_processor)
    assert model.language_model is llava.model.language_model  # moved, not copied (a 7 B is held once)
    assert model.encoders["image"].model is llava.model.vision_tower
    assert image_token_id_not_suppressed(llava)  # the source's own generation settings stay its own
    projector = llava.model.multi_modal_projector.state_dict()
    assert all(torch.equal(v, model.connectors["image"].state_dict()[k]) for k, v in projector.items())


def test_the_imported_template_trains_answers_through_their_eos(source, tmp_path):
    """The collator finds the answer span in the adapted template; the label ends with the EOS the
    source's training had (LLaVA-1.5's template omits it, ChatML's <|im_end|> is the EOS)."""
    from hf_mera.data.collator import IGNORE_INDEX, MultimodalCollator

    _, _, _, _, processor = source
    path = tmp_path / "im.png"
    test_image(5).save(path)
    row = {
        "id": "x",
        "messages": [
            {"role": "user", "content": "<image>\nwhat color is the shape ?"},
            {"role": "assistant", "content": "red"},
        ],
        "media": [{"modality": "image", "path": str(path)}],
    }
    batch = MultimodalCollator(processor)([row])
    labels = [t for t in batch["labels"][0].tolist() if t != IGNORE_INDEX]
    tokenizer = processor.tokenizer
    assert labels[0] == tokenizer.convert_tokens_to_ids("red")
    assert tokenizer.eos_token_id in labels
    assert batch["input_ids"][0, 0].item() == (
        tokenizer.bos_token_id or tokenizer.convert_tokens_to_ids("<|im_start|>")
    )


def test_unsupported_llava_settings_name_what_is_missing():
    from transformers import LlavaConfig, PaliGemmaConfig

    from hf_mera.models.anymodality_llava.llava_import import check_llava_config

    config = LlavaConfig()
    config.vision_feature_layer = [-2, -1]
    with pytest.raises(
        ValueError, match=r"several vision feature layers \(vision_feature_layer=\[-2, -1\]\)"
    ):
        check_llava_config(config)
    with pytest.raises(ValueError, match="cannot import a 'paligemma' model"):
        check_llava_config(PaliGemmaConfig())


@pytest.mark.parametrize("config_cls", ["LlavaNextConfig", "LlavaOnevisionConfig"])
def test_llava_next_and_onevision_name_image_tiling(tmp_path, config_cls):
    import transformers

    from hf_mera import AnyModalityLlava

    config = getattr(transformers, config_cls)(
        vision_config={"model_type": "clip_vision_model", "hidden_size": 16, "intermediate_size": 32,
                       "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        text_config={"model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "vocab_size": 64},
    )  # fmt: skip
    config.save_pretrained(tmp_path)  # the config alone: the import refuses before loading weights
    with pytest.raises(ValueError, match=r"image tiling \(image_grid_pinpoints\) is not supported"):
        AnyModalityLlava.from_llava(tmp_path)


def test_import_does_not_change_the_given_processor(source):
    from hf_mera import AnyModalityLlava

    folder, _, llava_processor, _, _ = source
    before = copy.deepcopy(llava_processor.tokenizer.get_vocab())
    AnyModalityLlava.from_llava(folder, processor=llava_processor)
    assert llava_processor.tokenizer.get_vocab() == before


# ---- the curriculum's `llava` backbone (its checks run before anything is built) ----------------
def test_the_shipped_llava_extend_config_starts_from_the_sources_image():
    from hf_mera.continual.curriculum import load_run_config
    from trainers.backbone import learned_modalities

    run = load_run_config("llava-extend")
    assert run.model.backbone.type == "llava" and run.model.modalities["image"] == {}
    assert learned_modalities(run) == ["image"] and run.order[0] == "image"
    assert learned_modalities(load_run_config("quickstart")) == []  # a bare LLM knows nothing yet


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--order", "[audio, image]"], r"order: .*already knows \['image'\]; the order must start with"),
        (
            ["--model.modalities.image", "{token_pool: 8}"],
            r"model\.modalities\.image: the llava backbone brings",
        ),
        (["--model.backbone.name_or_path", "null"], r"model\.backbone\.name_or_path"),
    ],
)
def test_a_llava_curriculum_that_cannot_start_names_the_field(overrides, message):
    from hf_mera.continual.curriculum import load_run_config
    from trainers.backbone import learned_modalities

    run = load_run_config("llava-extend", overrides)
    with pytest.raises(ValueError, match=message):
        learned_modalities(run)
