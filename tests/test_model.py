"""AnyModalityLlava and AnyModalityProcessor on tiny random models and real media files."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import TINY_MODALITIES, make_tiny_model

import hf_mera
from hf_mera import AnyModalityLlava, ModalityConfig


def interleaved_batch(processor, media_files):
    """Two prompts that interleave all four modalities (one with two images) with text."""
    texts = [
        "<image> <image> what color is the shape ? <audio> <point_cloud>",
        "<video> describe the input . <audio> <image>",
    ]
    media = [
        [
            {"modality": "image", "path": media_files["image0"]},
            {"modality": "image", "path": media_files["image1"]},
            {"modality": "audio", "path": media_files["audio0"]},
            {"modality": "point_cloud", "path": media_files["point_cloud0"]},
        ],
        [
            {"modality": "video", "path": media_files["video0"]},
            {"modality": "audio", "path": media_files["audio1"]},
            {"modality": "image", "path": media_files["image1"]},
        ],
    ]
    return processor(text=texts, media=media, padding=True)


def test_processor_expands_placeholders_and_stacks_media(tiny_model, media_files):
    model, processor = tiny_model
    batch = interleaved_batch(processor, media_files)
    values = batch["modality_values"]
    assert values["image"].shape == (3, 3, 32, 32)
    assert values["video"].shape == (1, 2, 3, 32, 32)
    assert values["audio"].shape[0] == 2 and values["point_cloud"].shape == (1, 64, 3)
    for name in model.modality_names:
        n_tokens = (batch["input_ids"] == processor.token_id(name)).sum().item()
        assert n_tokens == values[name].shape[0] * model.tokens_per_item(name)


def test_forward_backward_on_interleaved_modalities(tiny_model, media_files):
    model, processor = tiny_model
    model.train()
    batch = interleaved_batch(processor, media_files)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    out = model(**batch, labels=labels)
    assert out.logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(out.loss)
    assert set(out.modality_hidden_states) == {"image", "video", "audio", "point_cloud"}
    out.loss.backward()
    for name in model.modality_names:
        grads = [p.grad for p in model.connectors[name].parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), name
        # Encoders are frozen by default: no gradient reaches them.
        assert all(p.grad is None for p in model.encoders[name].parameters())
    assert model.language_model.layers[0].self_attn.q_proj.weight.grad is not None


def test_features_are_what_the_media_say(tiny_model, media_files):
    """Swapping the two images changes the logits: features are spliced where the placeholders are."""
    model, processor = tiny_model
    text = "<image> what color is the shape ?"
    a = processor(text=text, media=[{"modality": "image", "path": media_files["image0"]}])
    b = processor(text=text, media=[{"modality": "image", "path": media_files["image1"]}])
    with torch.no_grad():
        assert not torch.allclose(model(**a).logits, model(**b).logits)
        features = model.encode_features("image", a["modality_values"]["image"])
        from_features = model(input_ids=a["input_ids"], modality_features={"image": features}).logits
        torch.testing.assert_close(from_features, model(**a).logits)


def test_generate_uses_kv_cache_and_splices_only_at_prefill(tiny_model, media_files):
    model, processor = tiny_model
    processor.tokenizer.padding_side = "left"
    try:
        batch = interleaved_batch(processor, media_files)
    finally:
        processor.tokenizer.padding_side = "right"
    calls = []
    hook = model.model.connectors["audio"].register_forward_hook(lambda *a: calls.append(1))
    out = model.generate(**batch, max_new_tokens=5, do_sample=False, min_new_tokens=5)
    hook.remove()
    assert out.shape == (2, batch["input_ids"].shape[1] + 5)
    assert len(calls) == 1  # the audio connector ran once, at prefill
    # Greedy decoding with the cache equals decoding without it.
    no_cache = model.generate(**batch, max_new_tokens=5, do_sample=False, min_new_tokens=5, use_cache=False)
    assert torch.equal(out, no_cache)


def test_save_load_auto_classes_bitwise(tiny_model, media_files, tmp_path):
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoProcessor

    model, processor = tiny_model
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    assert type(AutoConfig.from_pretrained(tmp_path)) is hf_mera.AnyModalityLlavaConfig
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is AnyModalityLlava and type(loaded_processor) is hf_mera.AnyModalityProcessor
    original, reloaded = model.state_dict(), loaded.state_dict()
    assert original.keys() == reloaded.keys()
    assert all(torch.equal(original[k], reloaded[k]) for k in original)
    batch = interleaved_batch(processor, media_files)
    again = interleaved_batch(loaded_processor, media_files)
    assert torch.equal(batch["input_ids"], again["input_ids"])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded.eval()(**again).logits)
    backbone = AutoModel.from_pretrained(tmp_path)
    assert type(backbone) is hf_mera.AnyModalityLlavaModel
    assert torch.equal(
        backbone.connectors["image"].linear_1.weight, model.connectors["image"].linear_1.weight
    )


def test_add_modality_changes_nothing_already_learned(tiny_tokenizer, media_files):
    model, processor = make_tiny_model(tiny_tokenizer, modalities=("image", "audio"))
    batch = processor(
        text="<image> <audio> what color is the shape ?",
        media=[
            {"modality": "image", "path": media_files["image0"]},
            {"modality": "audio", "path": media_files["audio0"]},
        ],
    )
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(**batch).logits
    vocab_before = model.get_input_embeddings().weight.shape[0]
    model.add_modality(
        ModalityConfig(name="point_cloud", **copy.deepcopy(TINY_MODALITIES["point_cloud"])),
        processor=processor,
    )
    assert model.get_input_embeddings().weight.shape[0] == vocab_before + 1
    assert model.lm_head.weight is model.get_input_embeddings().weight  # still tied
    batch_after = processor(
        text="<image> <audio> what color is the shape ?",
        media=[
            {"modality": "image", "path": media_files["image0"]},
            {"modality": "audio", "path": media_files["audio0"]},
        ],
    )
    assert torch.equal(batch["input_ids"], batch_after["input_ids"])
    with torch.no_grad():
        after = model(**batch_after).logits
    torch.testing.assert_close(after[..., :vocab_before], before, rtol=0, atol=0)
    state = model.state_dict()
    for key, tensor in before_state.items():
        if "embed_tokens" in key or "lm_head" in key:
            assert torch.equal(state[key][:vocab_before], tensor)
        else:
            assert torch.equal(state[key], tensor), key
    assert (
        "point_cloud" in model.config.modalities
        and model.config.modalities["point_cloud"]["token_id"] == vocab_before
    )
    with pytest.raises(ValueError, match="already"):
        model.add_modality(
            ModalityConfig(name="point_cloud", **copy.deepcopy(TINY_MODALITIES["point_cloud"])),
            processor=processor,
        )


def test_chat_template_with_content_parts(tiny_model, media_files):
    _, processor = tiny_model
    conversation = [
        {
            "role": "user",
            "content": [
                {"type": "image", "path": media_files["image0"]},
                {"type": "audio", "path": media_files["audio0"]},
                {"type": "text", "text": "what color is the shape ?"},
            ],
        }
    ]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert text.startswith("user : <image>\n<audio>\nwhat color") and text.endswith("assistant : ")
    inputs = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
    assert set(inputs["modality_values"]) == {"image", "audio"}


def test_from_pretrained_components_keeps_the_llm(tiny_tokenizer):
    from hf_mera.models.tiny_lm import build_tiny_llama

    llm = build_tiny_llama(tiny_tokenizer, hidden_size=64, num_layers=2, seed=3).eval()
    model, processor = AnyModalityLlava.from_pretrained_components(
        llm, [], tokenizer=copy.deepcopy(tiny_tokenizer)
    )
    ids = processor(text="a red circle moves left")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, llm(input_ids=ids).logits, rtol=0, atol=0)
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.get_input_embeddings().weight


# ---- bad input ---------------------------------------------------------------------------------


def test_corrupt_and_lying_media_name_the_file(tiny_model, tmp_path, media_files):
    _, processor = tiny_model
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(open(media_files["image0"], "rb").read()[:40])
    lying = tmp_path / "actually_audio.png"
    lying.write_bytes(open(media_files["audio0"], "rb").read())
    garbage_video = tmp_path / "garbage.mp4"
    garbage_video.write_bytes(b"\x00not a video" * 50)
    for path, modality in [(truncated, "image"), (lying, "image"), (garbage_video, "video")]:
        with pytest.raises(ValueError, match=path.name):
            processor(text=f"<{modality}> x", media=[{"modality": modality, "path": str(path)}])


def test_unknown_modality_is_named(tiny_model, media_files):
    model, processor = tiny_model
    with pytest.raises(ValueError, match="thermal"):
        processor(text="<image> x", media=[{"modality": "thermal", "path": media_files["image0"]}])
    batch = processor(text="<image> x", media=[{"modality": "image", "path": media_files["image0"]}])
    with pytest.raises(ValueError, match="thermal"):
        model(input_ids=batch["input_ids"], modality_values={"thermal": torch.zeros(1, 3)})
    with pytest.raises(
        ValueError, match=r"modalities\.thermal\.connector_type: unknown connector 'conv'.*qformer"
    ):
        ModalityConfig(name="thermal", connector_type="conv")


def test_placeholders_that_do_not_match_the_features(tiny_model, media_files):
    model, processor = tiny_model
    batch = processor(
        text="<image> <image> x", media=[{"modality": "image", "path": media_files["image0"]}] * 2
    )
    one_image = batch["modality_values"]["image"][:1]
    with pytest.raises(ValueError, match="'image'.*placeholder"):
        model(input_ids=batch["input_ids"], modality_values={"image": one_image})
    with pytest.raises(ValueError, match="'image'.*no image input"):
        model(input_ids=batch["input_ids"])
    with pytest.raises(ValueError, match="placeholders ask for"):
        processor(text="<image> <audio> x", media=[{"modality": "image", "path": media_files["image0"]}])


def test_sft_trainer_trains_connector_and_lm_leaves_frozen_bitwise(tiny_model, media_files, tmp_path):
    """trl's SFTTrainer, unmodified, trains the composite: what is trainable changes, the rest doesn't."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from hf_mera.data.collator import MultimodalCollator

    model, processor = tiny_model
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = {"model.connectors.image", "model.language_model.layers.1"}
    for name, p in model.named_parameters():
        if any(name.startswith(prefix) for prefix in trainable):
            p.requires_grad_(True)
    rows = [
        {
            "id": str(i),
            "media": [{"modality": "image", "path": media_files[f"image{i % 2}"]}],
            "messages": [
                {"role": "user", "content": "<image>\nwhat color is the shape ?"},
                {"role": "assistant", "content": ["red", "blue"][i % 2]},
            ],
        }
        for i in range(4)
    ]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = SFTConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        bf16=False,
        use_cpu=True,
        report_to="none",
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        gradient_checkpointing=False,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        data_collator=MultimodalCollator(processor),
    )
    trainer.train()
    after = model.state_dict()
    for key, tensor in before.items():
        changed = not torch.equal(after[key], tensor)
        should_change = any(key.startswith(prefix) for prefix in trainable) and "rotary" not in key
        assert changed == should_change, key
