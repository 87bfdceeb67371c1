"""Modalities: file loading, preprocessing and encoders for image, video, audio and point cloud.

Importing this package registers the four built-in modalities in `MODALITY_REGISTRY` and the encoder
types in `ENCODER_REGISTRY`. Heavy decoders (PyAV, soundfile, trimesh, transformers) are imported only
when a file of their kind is read or an encoder that needs them is built.

    spec = get_modality("audio")
    values = spec.preprocessor_cls(**preprocess)(["clip.wav"])      # [n, samples]
    encoder = build_encoder(spec.default_encoder_type, {})            # "spectrogram"
    features = encoder(values)                                        # [n, num_tokens, hidden_size]
"""

# Registers the modalities in this order, the paper's: it is the canonical order (the benchmark's).
from . import image, video, audio, point_cloud  # noqa: F401, I001
from .audio import AudioPreprocessor, load_audio
from .base import (
    MODALITY_REGISTRY,
    ModalityPreprocessor,
    ModalitySpec,
    get_modality,
    modality_for_path,
    register_modality,
)
from .encoders import (
    ENCODER_REGISTRY,
    ModalityEncoder,
    build_encoder,
    encoder_fingerprint,
    load_pretrained_encoder,
    register_encoder,
)
from .image import CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, ImagePreprocessor, load_image
from .point_cloud import PointCloudPreprocessor, farthest_point_sample, load_point_cloud
from .video import VideoPreprocessor, load_video, sample_frame_indices

__all__ = [
    "CLIP_IMAGE_MEAN",
    "CLIP_IMAGE_STD",
    "ENCODER_REGISTRY",
    "MODALITY_REGISTRY",
    "AudioPreprocessor",
    "ImagePreprocessor",
    "ModalityEncoder",
    "ModalityPreprocessor",
    "ModalitySpec",
    "PointCloudPreprocessor",
    "VideoPreprocessor",
    "build_encoder",
    "encoder_fingerprint",
    "farthest_point_sample",
    "get_modality",
    "load_audio",
    "load_image",
    "load_point_cloud",
    "load_pretrained_encoder",
    "load_video",
    "modality_for_path",
    "register_encoder",
    "register_modality",
    "sample_frame_indices",
]
