"""`"video_frames"` encoder: a frame encoder applied per frame, then 2× bilinear pooling (paper C.1).

Config: `{"frame_encoder": {"encoder_type": ..., "encoder_config": {...}}, "num_frames": 4, "pool_stride": 2}`.
Input `[n, F, 3, H, W]` → all `n·F` frames encoded as one batch → each frame's patch tokens reshaped to
their 2-D grid → resized to `(rows // pool_stride, cols // pool_stride)` with bilinear interpolation
(for stride 2 on an even grid this is exactly a 2×2 average) → frames concatenated → `[n, F·T', D]`.
Prefix tokens (CLS) of the frame encoder are dropped before pooling: they have no place in the grid.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import (
    ModalityEncoder,
    build_encoder,
    get_encoder_class,
    load_pretrained_encoder,
    register_encoder,
)

__all__ = ["VideoFramesEncoder"]


@register_encoder("video_frames")
class VideoFramesEncoder(ModalityEncoder):
    """Encodes video frames separately with any grid-shaped frame encoder and pools each frame 2×."""

    default_config = {"frame_encoder": None, "num_frames": 4, "pool_stride": 2}

    def __init__(self, config: dict[str, Any], frame_encoder: ModalityEncoder | None = None) -> None:
        super().__init__(config)
        spec = config["frame_encoder"]
        if not isinstance(spec, dict) or "encoder_type" not in spec:
            raise ValueError(
                "video_frames: frame_encoder must be a dict with 'encoder_type' and 'encoder_config'."
            )
        self.frame_encoder = frame_encoder or build_encoder(spec["encoder_type"], spec.get("encoder_config"))
        spec["encoder_config"] = self.frame_encoder.config  # keep the resolved config for rebuilding
        self.num_frames = self._positive(config, "num_frames")
        stride = self._positive(config, "pool_stride")
        grid = self.frame_encoder.grid_size
        if grid is None:
            raise ValueError(
                f"video_frames: frame encoder {spec['encoder_type']!r} has no 2-D token grid to pool."
            )
        self.frame_grid = tuple(grid)
        self.pooled_grid = (max(1, grid[0] // stride), max(1, grid[1] // stride))
        self.hidden_size = self.frame_encoder.hidden_size
        self.num_tokens = self.num_frames * self.pooled_grid[0] * self.pooled_grid[1]
        frame_shape = self.frame_encoder.input_shape
        self.input_shape = None if frame_shape is None else (self.num_frames, *frame_shape)

    @staticmethod
    def _positive(config: dict[str, Any], key: str) -> int:
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"video_frames: {key} must be a positive int, got {value!r}.")
        return value

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        # `from_pretrained`'s own options, then the rest as the frame encoder's.
        options = dict(options)
        for key in ("num_frames", "pool_stride"):
            if key in options:
                cls._positive(options, key)
                del options[key]
        frame_type = options.pop("frame_encoder_type", "transformers")
        get_encoder_class(frame_type, where="encoder_config.frame_encoder_type").check_options(options)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | None,
        frame_encoder_type: str = "transformers",
        num_frames: int = 4,
        pool_stride: int = 2,
        **frame_kwargs: Any,
    ) -> VideoFramesEncoder:
        """Loads the frame encoder's weights with `load_pretrained_encoder(frame_encoder_type, ...)`."""
        frame_encoder, frame_config = load_pretrained_encoder(
            frame_encoder_type, name_or_path, **frame_kwargs
        )
        config = cls.resolve_config(
            {
                "frame_encoder": {"encoder_type": frame_encoder_type, "encoder_config": frame_config},
                "num_frames": num_frames,
                "pool_stride": pool_stride,
            }
        )
        return cls(config, frame_encoder=frame_encoder)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        if values.ndim != 5 or values.shape[1] != self.num_frames:
            raise ValueError(
                f"video_frames expects [n, {self.num_frames}, C, H, W] inputs, got {list(values.shape)}; "
                "the video preprocess num_frames must match the encoder's."
            )
        n, frames = values.shape[:2]
        tokens = self.frame_encoder(values.flatten(0, 1))[:, self.frame_encoder.num_prefix_tokens :]
        rows, cols = self.frame_grid
        maps = tokens.transpose(1, 2).reshape(n * frames, -1, rows, cols)
        pooled = F.interpolate(maps, size=self.pooled_grid, mode="bilinear", align_corners=False)
        return pooled.flatten(2).transpose(1, 2).reshape(n, self.num_tokens, self.hidden_size)
