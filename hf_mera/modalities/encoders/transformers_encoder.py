"""`"transformers"` encoder: any transformers vision or audio encoder (CLIP, SigLIP, Whisper, AST, ...).

The encoder config is the transformers config dict (with `model_type`) plus these keys of ours:

- `feature_layer` (default -1): which entry of `hidden_states` is the feature (LLaVA uses -2);
- `drop_cls_token` (default False): drop the prefix tokens (CLS, distillation, ...) before the patches;
- `model_class` (default None → `AutoModel`): dotted path of a transformers class to build, recorded by
  `from_pretrained` so a rebuilt encoder has exactly the loaded module's class and parameter names
  (e.g. `WhisperEncoder` without Whisper's decoder);
- `input_shape` (default None → inferred from the config): per-item input shape, for models whose input
  size the config does not fix (e.g. raw-waveform wav2vec2).

Encoder-decoder models (Whisper) keep only their encoder. The number of output tokens comes from the
config where it says (Whisper: `max_source_positions`), else from a dry run of the cheap embedding layer
(CLIP, SigLIP, AST), else from a dry run of the whole model on a dummy input.

`from_pretrained` also loads the checkpoint's own preprocessing (`AutoImageProcessor` for pixel inputs,
else `AutoFeatureExtractor`) as `hub_processor`; `preprocess_with_hub_defaults` turns it into the defaults of
the modality's preprocessor, so swapping CLIP for SigLIP needs no mean/std in the YAML.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .base import ModalityEncoder, register_encoder

__all__ = ["TransformersEncoder", "load_hub_processor", "preprocess_with_hub_defaults"]

logger = logging.getLogger(__name__)

_OWN_KEYS = {"feature_layer": -1, "drop_cls_token": False, "model_class": None, "input_shape": None}


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


# Per-item dummy input shape, keyed by the model's `main_input_name`.
_INPUT_SHAPE_RULES: dict[str, Callable[[Any], tuple[int, ...]]] = {
    "pixel_values": lambda c: (getattr(c, "num_channels", 3), *_pair(c.image_size)),
    "input_values": lambda c: (c.max_length, c.num_mel_bins),  # AST: a (frames, mel bins) spectrogram
    "input_features": lambda c: (c.num_mel_bins, 2 * c.max_source_positions),  # Whisper: conv stride 2
}
# Output length straight from the config, keyed by `model_type` (a dry run of Whisper-large costs ~1 TFLOP).
_SEQUENCE_LENGTH_RULES: dict[str, Callable[[Any], int]] = {
    "whisper": lambda c: c.max_source_positions,
}
# Keyword arguments of `from_pretrained` that say where the files are, and so apply to the processor too
# (others, such as `dtype`, would be stored on it as settings).
_HUB_LOCATION_KEYS = ("revision", "cache_dir", "token", "local_files_only", "force_download", "subfolder")
# Learned tokens that embedding layers prepend to the patch sequence.
_PREFIX_TOKEN_ATTRIBUTES = ("class_embedding", "cls_token", "distillation_token")


def _import_model_class(dotted: str) -> type:
    """A transformers class from its dotted path; other packages are refused (configs may be untrusted)."""
    module_name, _, class_name = dotted.rpartition(".")
    if not (module_name == "transformers" or module_name.startswith("transformers.")):
        raise ValueError(f"model_class must be a transformers class, got {dotted!r}.")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"model_class {dotted!r} cannot be imported: {err}") from err


def _resolve_model_class(model_class: str | None) -> type:
    import transformers

    if model_class is None:
        return transformers.AutoModel
    dotted = model_class if "." in model_class else f"transformers.{model_class}"
    return _import_model_class(dotted)


def _encoder_part(module: nn.Module) -> nn.Module:
    """The encoder of an encoder-decoder model (Whisper), else the module itself."""
    get_encoder = getattr(module, "get_encoder", None)
    if getattr(module.config, "is_encoder_decoder", False) and callable(get_encoder):
        encoder = get_encoder()
        if isinstance(encoder, nn.Module):
            return encoder
    return module


def _build_module(hf_config: dict[str, Any], model_class: str | None) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    if "model_type" not in hf_config:
        raise ValueError("A 'transformers' encoder_config needs the transformers config's 'model_type'.")
    config = AutoConfig.for_model(**hf_config)
    cls = _resolve_model_class(model_class)
    module = cls.from_config(config) if cls is AutoModel else cls._from_config(config)
    return _encoder_part(module)


def _input_shape(module: nn.Module, override: list[int] | None) -> tuple[int, ...]:
    if override is not None:
        return tuple(int(size) for size in override)
    name, config = module.main_input_name, module.config
    rule = _INPUT_SHAPE_RULES.get(name)
    try:
        if rule is None:
            raise AttributeError(f"no rule for inputs named {name!r}")
        return rule(config)
    except AttributeError as err:
        raise ValueError(
            f"Cannot infer the input shape of {type(module).__name__} ({err}); set encoder_config['input_shape']. "
            "For a text-image checkpoint such as full CLIP, load its vision tower with "
            "model_class='CLIPVisionModel' (or give the vision config, model_type 'clip_vision_model')."
        ) from err


@torch.no_grad()
def _sequence_length(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Output tokens per item: from the config if a rule knows, else measured on a dummy input."""
    rule = _SEQUENCE_LENGTH_RULES.get(module.config.model_type)
    if rule is not None:
        return int(rule(module.config))
    param = next(module.parameters())
    dummy = torch.zeros(1, *input_shape, dtype=param.dtype, device=param.device)
    embeddings = getattr(module, "embeddings", None)
    if isinstance(embeddings, nn.Module):
        return int(embeddings(dummy).shape[1])
    return int(module(**{module.main_input_name: dummy}).last_hidden_state.shape[1])


def _grid_and_prefix(module: nn.Module, input_shape: tuple[int, ...], seq_len: int) -> tuple[Any, int]:
    """Patch grid `(rows, cols)` of image models and the count of prefix tokens before it."""
    patch = getattr(module.config, "patch_size", None)
    if module.main_input_name == "pixel_values" and patch is not None:
        rows, cols = input_shape[-2] // _pair(patch)[0], input_shape[-1] // _pair(patch)[1]
        if rows * cols <= seq_len:
            return (rows, cols), seq_len - rows * cols
    embeddings = getattr(module, "embeddings", None)
    return None, sum(hasattr(embeddings, attr) for attr in _PREFIX_TOKEN_ATTRIBUTES)


def load_hub_processor(name_or_path: str, main_input_name: str, **hub_kwargs: Any) -> Any | None:
    """The checkpoint's own preprocessing: its image processor for pixel inputs, else its feature extractor;
    None (logged) when it ships none, and the modality's built-in defaults apply."""
    from transformers import AutoFeatureExtractor, AutoImageProcessor

    auto = AutoImageProcessor if main_input_name == "pixel_values" else AutoFeatureExtractor
    location = {key: value for key, value in hub_kwargs.items() if key in _HUB_LOCATION_KEYS}
    try:
        return auto.from_pretrained(name_or_path, **location)
    except (OSError, ValueError) as err:  # no preprocessor_config.json, or a type transformers lacks
        logger.info(
            "%s has no usable %s (%s); preprocessing keeps its defaults.", name_or_path, auto.__name__, err
        )
        return None


def preprocess_with_hub_defaults(
    modality: str, encoder: nn.Module, preprocess: dict[str, Any]
) -> dict[str, Any]:
    """`preprocess` (a modality's YAML settings) over the defaults its hub encoder's own processor implies.

    Keys given in `preprocess` win. Encoders loaded without a hub processor (built-ins, `from_config`)
    leave `preprocess` as it is. A `"video_frames"` encoder answers for its frame encoder.
    """
    from hf_mera.modalities import get_modality  # lazy: hf_mera.modalities imports this module

    hub_encoder = getattr(encoder, "frame_encoder", encoder)
    processor = getattr(hub_encoder, "hub_processor", None)
    if processor is None:
        return dict(preprocess)
    return {**get_modality(modality).preprocessor_cls.kwargs_from_hub(processor), **preprocess}


@register_encoder("transformers")
class TransformersEncoder(ModalityEncoder):
    """Wraps a transformers encoder; features are `hidden_states[feature_layer]` (see module docstring)."""

    def __init__(self, config: dict[str, Any], module: nn.Module | None = None) -> None:
        super().__init__(config)
        own = {key: config.get(key, default) for key, default in _OWN_KEYS.items()}
        hf_config = {key: value for key, value in config.items() if key not in _OWN_KEYS}
        self.model = module if module is not None else _build_module(hf_config, own["model_class"])
        self.main_input_name: str = self.model.main_input_name
        self.feature_layer = self._check_feature_layer(own["feature_layer"])
        self.drop_cls_token = bool(own["drop_cls_token"])
        self.input_shape = _input_shape(self.model, own["input_shape"])
        seq_len = _sequence_length(self.model, self.input_shape)
        self.grid_size, prefix = _grid_and_prefix(self.model, self.input_shape, seq_len)
        self._prefix = prefix
        self.num_prefix_tokens = 0 if self.drop_cls_token else prefix
        self.num_tokens = seq_len - prefix if self.drop_cls_token else seq_len
        self.hidden_size = int(self.model.config.hidden_size)
        self.hub_processor: Any | None = None  # set by from_pretrained; see preprocess_with_hub_defaults

    def _check_feature_layer(self, layer: Any) -> int:
        layers = getattr(self.model.config, "num_hidden_layers", None)
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise ValueError(f"feature_layer must be an int, got {layer!r}.")
        if layers is not None and not -(layers + 1) <= layer <= layers:
            raise ValueError(f"feature_layer {layer} is out of range for a {layers}-layer encoder.")
        return layer

    @classmethod
    def resolve_config(cls, config: dict[str, Any] | None) -> dict[str, Any]:
        # The transformers part is validated by transformers itself; only our keys get defaults here.
        return json.loads(json.dumps({**_OWN_KEYS, **(config or {})}))

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        # Its named options are in `from_pretrained`'s signature (checked by the caller); the rest go to
        # transformers' `from_pretrained`, which alone knows what it accepts.
        return None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | None,
        feature_layer: int = -1,
        drop_cls_token: bool = False,
        model_class: str | None = None,
        input_shape: list[int] | None = None,
        **hf_kwargs: Any,
    ) -> TransformersEncoder:
        """`AutoModel.from_pretrained(name_or_path, **hf_kwargs)` (or `model_class`, e.g. `"CLIPVisionModel"`
        to take the vision tower of a full CLIP checkpoint); hub ids and local folders both work. The
        checkpoint's own image processor / feature extractor, if any, becomes `hub_processor`."""
        if name_or_path is None:
            raise ValueError("The 'transformers' encoder needs a hub id or a folder to load weights from.")
        module = _encoder_part(_resolve_model_class(model_class).from_pretrained(name_or_path, **hf_kwargs))
        own = {
            "feature_layer": feature_layer,
            "drop_cls_token": drop_cls_token,
            "model_class": f"{type(module).__module__}.{type(module).__name__}",
            "input_shape": input_shape,
        }
        hf_config = json.loads(module.config.to_json_string(use_diff=False))
        encoder = cls(cls.resolve_config({**hf_config, **own}), module=module)
        encoder.hub_processor = load_hub_processor(name_or_path, encoder.main_input_name, **hf_kwargs)
        return encoder

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        self.check_input(values)
        param = next(self.model.parameters())
        outputs = self.model(
            **{self.main_input_name: values.to(device=param.device, dtype=param.dtype)},
            output_hidden_states=True,
        )
        features = outputs.hidden_states[self.feature_layer]
        return features[:, self._prefix :] if self.drop_cls_token else features
