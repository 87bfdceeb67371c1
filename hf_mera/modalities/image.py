"""Image modality: decode with Pillow, resize (bicubic), normalise (CLIP statistics by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from .base import (
    ModalityPreprocessor,
    ModalitySpec,
    channel_triple,
    existing_file,
    is_path,
    register_modality,
    size_pair,
)

__all__ = ["CLIP_IMAGE_MEAN", "CLIP_IMAGE_STD", "ImagePreprocessor", "image_to_tensor", "load_image"]

CLIP_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _read_image_file(path: Path) -> Image.Image:
    """Opens, verifies and fully decodes `path`; Pillow's many error types become one `ValueError`."""
    try:
        # verify() catches corrupt chunks without decoding, but leaves the file unusable: reopen to load().
        with Image.open(path) as probe:
            probe.verify()
        with Image.open(path) as image:
            image.load()
            # EXIF rotation is how phones store portrait photos.
            return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        # UnidentifiedImageError (text or audio named .png) and "image file is truncated" are OSErrors.
        raise ValueError(f"Cannot read image {path}: {err}") from err


def _array_to_image(array: np.ndarray) -> Image.Image:
    """HWC (or HW grey) uint8, or float in [0, 1], as an RGB PIL image."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"Image arrays must be HxW, HxWx1, HxWx3 or HxWx4, got shape {tuple(array.shape)}.")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
            raise ValueError("Float image arrays must hold finite values in [0, 1].")
        array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ValueError(f"Image arrays must be uint8 or float, got {array.dtype}.")
    channels = array.shape[2]
    if channels == 1:
        array = np.repeat(array, 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array[:, :, :3]))


def load_image(item: Any) -> Image.Image:
    """Reads one image (path, `PIL.Image` or numpy array) as an RGB `PIL.Image`.

    Unreadable, truncated or mislabelled files (a `.png` that is really text or a WAV) raise `ValueError`
    naming the path. A file that decodes as some other image format is accepted: content decides.
    """
    if is_path(item):
        return _read_image_file(existing_file(item, "image"))
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, np.ndarray):
        return _array_to_image(item)
    raise ValueError(
        f"Cannot read image from a {type(item).__name__}; pass a path, PIL.Image or numpy array."
    )


def image_to_tensor(
    image: Image.Image, size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """Bicubic resize to `size` = (height, width), scale to [0, 1], normalise → float tensor [3, H, W]."""
    resized = image.resize((size[1], size[0]), resample=Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (pixels - mean_t) / std_t


class ImagePreprocessor(ModalityPreprocessor):
    """Images → `[n, 3, H, W]` float tensor.

    Args:
        image_size: int or (height, width) the image is resized to (no crop: the aspect ratio is not kept,
            as in LLaVA's resize-only variants). Default 224.
        image_mean, image_std: per-channel normalisation; CLIP's statistics by default.
    """

    modality = "image"
    defaults = {"image_size": 224, "image_mean": CLIP_IMAGE_MEAN, "image_std": CLIP_IMAGE_STD}

    def _validate(self) -> None:
        owner = type(self).__name__
        self.size = size_pair(owner, "image_size", self.kwargs["image_size"])
        self.mean = channel_triple(owner, "image_mean", self.kwargs["image_mean"])
        self.std = channel_triple(owner, "image_std", self.kwargs["image_std"], positive=True)

    def process_item(self, item: Any) -> torch.Tensor:
        return image_to_tensor(load_image(item), self.size, self.mean, self.std)


register_modality(
    ModalitySpec(
        name="image",
        file_extensions=IMAGE_EXTENSIONS,
        load=load_image,
        preprocessor_cls=ImagePreprocessor,
        default_encoder_type="transformers",
    )
)
