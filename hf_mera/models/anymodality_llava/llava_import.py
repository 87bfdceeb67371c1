"""Import a transformers LLaVA checkpoint as an AnyModalityLlava that already knows images.

`AnyModalityLlava.from_llava(model_or_path)` calls `from_llava` here. The mapping, part by part:

==============================================  =================================================
transformers `LlavaForConditionalGeneration`    AnyModalityLlava
==============================================  =================================================
`model.vision_tower` (CLIP / SigLIP vision)     `encoders.image` ("transformers" encoder), with
`config.vision_feature_layer`                   `feature_layer`
`config.vision_feature_select_strategy`         `drop_cls_token` ("default" → True, "full" → False)
`model.multi_modal_projector`                   `connectors.image` ("mlp2x_gelu", same key names)
`config.projector_hidden_act` / `..._bias`      `config.projector_hidden_act` / connector `bias`
`model.language_model`, `lm_head`               `model.language_model`, `lm_head` (the same modules)
`config.image_token_id` (`<image>`)             the image placeholder token and its id
processor's image processor                     `preprocess.image_processor` (run as it is)
processor's chat template                       the AnyModalityProcessor's chat template (adapted)
==============================================  =================================================

The language model, head and vision tower are *moved*, not copied: a 7 B source is never held
twice. A model object passed in therefore shares those modules with the result; pass
`copy.deepcopy(model)` to keep the source independent.

Exactness. The imported forward runs the very same modules and operations in the same order
(vision tower with hidden states → the selected layer → drop CLS → projector → `masked_scatter`
into the input embeddings → language model → head), so logits are bitwise equal to the source's
on the same `input_ids` and `pixel_values`; the tests check this. Generation differs in one
deliberate way: like every placeholder, `<image>` is added to `generation_config.suppress_tokens`,
so the imported model never emits it; greedy generations are equal whenever the source does not
pick `<image>` (compare with the source's `generate(..., suppress_tokens=[image_token_id])`).

The chat template. LLaVA templates read `content` as a list of parts (`{"type": "image"}`,
`{"type": "text", ...}`), while hf_mera's samples hold strings with the placeholder inline
(`"<image>\\nWhat colour?"`). The imported template first turns each string into one text part,
which renders exactly as LLaVA renders an image part followed by the text. Two things the source
gets from elsewhere are added to it, so that what hf_mera trains on is what the source was trained
on: the BOS token, when the tokenizer adds one by default (LlavaProcessor tokenizes with special
tokens, hf_mera's collator without), and the EOS token after each assistant answer, when the
template does not end answers with it (llava-hf's LLaVA-1.5 template does not; LLaVA-1.5 was
trained with `</s>` after each answer, and generation stops on it).

Not supported (a ValueError names it): image tiling (`image_grid_pinpoints`: LLaVA-NeXT,
LLaVA-OneVision), several vision feature layers (`vision_feature_layer` as a list), other feature
selection strategies, and any other multimodal class.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Why a LLaVA-family model_type cannot be imported (the error names the missing feature).
_UNSUPPORTED = {
    "llava_next": "image tiling (image_grid_pinpoints) is not supported",
    "llava_next_video": "image tiling (image_grid_pinpoints) is not supported, nor its video path",
    "llava_onevision": "image tiling (image_grid_pinpoints) is not supported, nor its video path",
    "vipllava": "VipLlava's multi-layer projector (vision_feature_layers) is not supported",
}
_STRATEGIES = {"default": True, "full": False}  # vision_feature_select_strategy → drop_cls_token


def _is_location(value: Any) -> bool:
    return isinstance(value, (str, bytes)) or hasattr(value, "__fspath__")


def check_llava_config(config) -> None:
    """A `ValueError` naming what is missing when `config` is not a LLaVA this import maps exactly."""
    model_type = getattr(config, "model_type", None)
    if model_type != "llava":
        reason = _UNSUPPORTED.get(model_type)
        if reason is None and getattr(config, "image_grid_pinpoints", None):
            reason = "image tiling (image_grid_pinpoints) is not supported"
        raise ValueError(
            f"from_llava: cannot import a {model_type!r} model: "
            f"{reason or 'only LlavaForConditionalGeneration (model_type llava) is mapped'}."
        )
    if getattr(config, "image_grid_pinpoints", None):
        raise ValueError("from_llava: image tiling (image_grid_pinpoints) is not supported.")
    layer = config.vision_feature_layer
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise ValueError(
            f"from_llava: several vision feature layers (vision_feature_layer={layer!r}) are not "
            "supported; the image encoder reads one layer."
        )
    if config.vision_feature_select_strategy not in _STRATEGIES:
        raise ValueError(
            f"from_llava: vision_feature_select_strategy {config.vision_feature_select_strategy!r} is not "
            f"supported (known: {sorted(_STRATEGIES)})."
        )


def load_llava(name_or_path, **kwargs):
    """`LlavaForConditionalGeneration.from_pretrained`, after checking the config maps."""
    from transformers import AutoConfig, LlavaForConditionalGeneration

    check_llava_config(AutoConfig.from_pretrained(name_or_path, **_location_kwargs(kwargs)))
    return LlavaForConditionalGeneration.from_pretrained(name_or_path, **kwargs)


def _location_kwargs(kwargs: dict) -> dict:
    keys = ("revision", "cache_dir", "token", "local_files_only", "force_download", "subfolder")
    return {k: v for k, v in kwargs.items() if k in keys}


# Turns string contents into one text part (see the module docstring); `eos` is appended to
# assistant answers when the source template does not end them with the EOS token.
_STRING_CONTENT_AS_PARTS = (
    "{%- set _hf_mera = namespace(messages=[]) -%}"
    "{%- for m in messages -%}"
    "{%- if m['content'] is string -%}"
    "{%- set _text = m['content'] ~ (eos_token if (m['role'] == 'assistant' and __APPEND_EOS__) else '') -%}"
    "{%- set _hf_mera.messages = _hf_mera.messages + "
    "[{'role': m['role'], 'content': [{'type': 'text', 'text': _text}]}] -%}"
    "{%- else -%}{%- set _hf_mera.messages = _hf_mera.messages + [m] -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- set messages = _hf_mera.messages -%}"
)


def adapt_chat_template(template: str, tokenizer) -> str:
    """The source's chat template for hf_mera's string contents, with the BOS and EOS the source's
    training had (module docstring). Idempotent on its own output."""
    if template.startswith("{%- set _hf_mera"):
        return template
    with_bos = ""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    special = tokenizer("a")["input_ids"]
    bos_id = tokenizer.bos_token_id
    if bos_id is not None and special[: len(special) - len(plain)] == [bos_id]:
        with_bos = "{{ bos_token }}"

    def render(append_eos: bool, body: str) -> str:
        probe = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "HFMERAPROBE"}]
        wrapped = _STRING_CONTENT_AS_PARTS.replace("__APPEND_EOS__", "true" if append_eos else "false")
        return tokenizer.apply_chat_template(probe, chat_template=wrapped + body, tokenize=False)

    eos = tokenizer.eos_token
    after_answer = render(False, template).split("HFMERAPROBE", 1)[-1]
    append_eos = bool(eos) and eos not in after_answer
    if with_bos and render(False, template).startswith(tokenizer.bos_token or "\0"):
        with_bos = ""  # the template renders its own BOS
    flag = "true" if append_eos else "false"
    return _STRING_CONTENT_AS_PARTS.replace("__APPEND_EOS__", flag) + with_bos + template


def processor_from_llava(llava_processor, modalities: dict | None = None):
    """An `AnyModalityProcessor` with the LLaVA processor's tokenizer and adapted chat template (no
    modality yet: `from_llava` registers the image with its token count and image processor)."""
    from .processing_anymodality_llava import AnyModalityProcessor

    tokenizer = copy.deepcopy(llava_processor.tokenizer)  # ours grows with each modality; theirs must not
    template = getattr(llava_processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one
        template = template.get("default")
    chat_template = adapt_chat_template(template, tokenizer) if template else None
    return AnyModalityProcessor(tokenizer=tokenizer, modalities=modalities, chat_template=chat_template)


def image_processor_settings(image_processor) -> dict[str, Any]:
    """The image processor as JSON (what `ImagePreprocessor(image_processor=...)` rebuilds)."""
    return json.loads(image_processor.to_json_string())


def _vision_encoder(vision_tower: nn.Module, config):
    """The vision tower wrapped as hf_mera's "transformers" encoder, reading LLaVA's feature layer."""
    from hf_mera.modalities.encoders.transformers_encoder import TransformersEncoder

    own = {
        "feature_layer": config.vision_feature_layer,
        "drop_cls_token": _STRATEGIES[config.vision_feature_select_strategy],
        "model_class": f"{type(vision_tower).__module__}.{type(vision_tower).__name__}",
        "input_shape": None,
    }
    hf_config = json.loads(vision_tower.config.to_json_string(use_diff=False))
    encoder = TransformersEncoder(
        TransformersEncoder.resolve_config({**hf_config, **own}), module=vision_tower
    )
    # LLaVA's "default" drops exactly one token ([:, 1:]); the encoder drops the tower's prefix tokens.
    if own["drop_cls_token"] and encoder._prefix != 1:
        raise ValueError(
            f"from_llava: vision_feature_select_strategy 'default' drops one CLS token, but this vision tower "
            f"({type(vision_tower).__name__}) has {encoder._prefix} prefix tokens."
        )
    return encoder


def from_llava(cls, model_or_path, processor=None, **kwargs):
    """Map a transformers LLaVA into `cls` (AnyModalityLlavaForConditionalGeneration); returns
    `(model, processor)`. `model_or_path`: a `LlavaForConditionalGeneration`, a local folder or a hub
    id (then `kwargs` go to `from_pretrained`, e.g. `dtype=torch.bfloat16`). `processor`: the source's
    `LlavaProcessor`; loaded from the same place when omitted (from `model.name_or_path` for an object).
    """
    from transformers import AutoProcessor

    from .configuration_anymodality_llava import AnyModalityLlavaConfig, ModalityConfig

    if _is_location(model_or_path):
        source = load_llava(model_or_path, **kwargs)
        where = model_or_path
    else:
        source = model_or_path
        check_llava_config(source.config)
        where = getattr(source, "name_or_path", None) or getattr(source.config, "_name_or_path", None)
    if processor is None:
        if not where or not Path(str(where)).exists() and "/" not in str(where):
            raise ValueError("from_llava: pass the source's LlavaProcessor as `processor=`.")
        processor = AutoProcessor.from_pretrained(where, **_location_kwargs(kwargs))
    for attr in ("tokenizer", "image_processor"):
        if getattr(processor, attr, None) is None:
            raise ValueError(f"from_llava: the source processor has no {attr}; pass its LlavaProcessor.")

    src_config = source.config
    text_config = src_config.get_text_config()
    config = AnyModalityLlavaConfig(
        text_config=text_config.to_dict(),
        projector_hidden_act=src_config.projector_hidden_act,
        tie_word_embeddings=bool(getattr(src_config, "tie_word_embeddings", False)),
    )
    # Built on the meta device (nothing allocated), then the source's modules are moved in.
    with torch.device("meta"):
        model = cls(config)
    model.model.language_model = source.model.language_model
    model.lm_head = source.lm_head
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = copy.deepcopy(source.generation_config)  # ours suppresses <image>
    model.config.dtype = src_config.dtype

    image_token = processor.image_token
    tokenizer = processor.tokenizer
    token_id = tokenizer.convert_tokens_to_ids(image_token)
    if token_id != src_config.image_token_id:
        raise ValueError(
            f"from_llava: the processor's image token {image_token!r} has id {token_id}, the model's "
            f"image_token_id is {src_config.image_token_id}."
        )
    encoder = _vision_encoder(source.model.vision_tower, src_config)
    settings = image_processor_settings(processor.image_processor)
    crop = _output_size(processor.image_processor)
    if crop is not None and tuple(crop) != tuple(encoder.input_shape[-2:]):
        raise ValueError(
            f"from_llava: the image processor outputs {crop[0]}x{crop[1]} images, the vision tower takes "
            f"{encoder.input_shape[-2]}x{encoder.input_shape[-1]}."
        )
    image = ModalityConfig(
        name="image",
        placeholder_token=image_token,
        token_id=token_id,
        encoder_type="transformers",
        encoder_config=encoder.config,
        connector_type="mlp2x_gelu",
        connector_config={"bias": bool(src_config.multimodal_projector_bias)},
        preprocess={"image_processor": settings},
    )
    new_processor = processor_from_llava(processor)
    model.add_modality(image, encoder=encoder, processor=new_processor)
    projector = source.model.multi_modal_projector
    model.connectors["image"].load_state_dict(projector.state_dict())
    model.connectors["image"].to(projector.linear_1.weight.dtype)
    _check_tokens_per_item(model, processor, new_processor)
    left_on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left_on_meta:
        raise ValueError(f"from_llava: tensors not mapped from the source: {left_on_meta[:5]}.")
    model.eval()
    return model, new_processor


def _output_size(image_processor) -> tuple[int, int] | None:
    """(height, width) of the processor's output when fixed (a crop, or a resize to height × width)."""
    from hf_mera.modalities.image import _size_field

    crop = image_processor.crop_size if getattr(image_processor, "do_center_crop", False) else None
    size = crop or getattr(image_processor, "size", None)
    height, width = _size_field(size, "height"), _size_field(size, "width")
    return (int(height), int(width)) if height and width else None


def _check_tokens_per_item(model, llava_processor, processor) -> None:
    """The placeholder count per image must be what LlavaProcessor expands `<image>` to."""
    patch = getattr(llava_processor, "patch_size", None)
    if patch is None:
        return
    height, width = model.encoders["image"].input_shape[-2:]
    expected = (height // patch) * (width // patch) + llava_processor.num_additional_image_tokens
    expected -= 1 if llava_processor.vision_feature_select_strategy == "default" else 0
    ours = processor.modalities["image"]["tokens_per_item"]
    if ours != expected:
        raise ValueError(
            f"from_llava: the LlavaProcessor expands <image> to {expected} tokens, the imported model "
            f"to {ours} (check the processor's patch_size and num_additional_image_tokens)."
        )


__all__ = ["adapt_chat_template", "check_llava_config", "from_llava", "load_llava", "processor_from_llava"]
