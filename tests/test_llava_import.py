"""`AnyModalityLlava.from_llava`: a transformers LLaVA imported exactly (tiny random models, no hub).

Each source is built from configs (a CLIP vision tower and a Llama or Qwen2 text model), saved with
`save_pretrained` together with its `LlavaProcessor` (a word-level tokenizer + `CLIPImageProcessor`)
and imported from the folder, so the path code runs as it does for a hub id.
"""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import (
    CONVERSATIONS,
    both_inputs,
    build_tiny_llava,
    random_image,
)


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def source(request, tmp_path_factory):
    """(folder, LLaVA model, LlavaProcessor, imported model, its processor) per text family."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from hf_mera import AnyModalityLlava

    folder = build_tiny_llava(tmp_path_factory.mktemp(f"llava-{request.param}"), request.param)
    llava = LlavaForConditionalGeneration.from_pretrained(folder).eval()
    llava_processor = AutoProcessor.from_pretrained(folder)
    # Batched generation pads on the left (llava-hf's processors do; ours always does).
    llava_processor.tokenizer.padding_side = "left"
    model, processor = AnyModalityLlava.from_llava(folder)
    return folder, llava, llava_processor, model, processor


def test_processor_gives_the_source_processors_ids_and_pixels(source):
    _, _, llava_processor, _, processor = source
    images = [random_image(0), random_image(1, size=(64, 30))]
    src, ours, source_texts, our_texts = both_inputs(llava_processor, processor, images, CONVERSATIONS)
    # Ours renders the BOS into the text (LlavaProcessor's tokenizer adds it); the ids are the same.
    assert src["input_ids"].tolist() == ours["input_ids"].tolist()
    assert src["attention_mask"].tolist() == ours["attention_mask"].tolist()
    assert torch.equal(src["pixel_values"], ours["modality_values"]["image"])


def test_answers_render_as_the_source_renders_them_plus_the_eos_it_trained_with(source):
    _, _, llava_processor, _, processor = source
    _, _, (source_text,), (our_text,) = both_inputs(
        llava_processor, processor, [random_image(0)], [("what is this ?", "a red circle")]
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
    images = [random_image(2), random_image(3, size=(33, 90))]
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
        src, ours, _, _ = both_inputs(
            llava_processor, processor, [random_image(10 + seed)], CONVERSATIONS[:1]
        )
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
        llava_processor, loaded_processor, [random_image(4), random_image(6)], CONVERSATIONS
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
    random_image(5).save(path)
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
