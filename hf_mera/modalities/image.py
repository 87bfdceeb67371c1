"""Image modality: decode with Pillow, resize (bicubic), normalise (CLIP statistics by default)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from hf_mera.data.embedded.image import ImageGenerator

from .base import (
    ModalityPreprocessor,
    ModalitySpec,
    channel_triple,
    existing_file,
    is_path,
    register_modality,
    size_pair,
)

__all__ = [
    "CLIP_IMAGE_MEAN",
    "CLIP_IMAGE_STD",
    "ImagePreprocessor",
    "image_kwargs_from_hub",
    "image_to_tensor",
    "load_image",
]

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


def image_kwargs_from_hub(processor: Any) -> dict[str, Any]:
    """`image_size`, `image_mean`, `image_std` implied by a transformers image processor (CLIP's, SigLIP's, ...).

    The size is the crop when the processor crops (CLIP: resize the short side, crop 224²), else its resize
    target. Its rescale factor is folded into mean and std, as `image_to_tensor` always divides by 255.
    Our resize stays bicubic and uncropped whatever the processor's own resample and crop.
    """
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = crop or getattr(processor, "size", None)
    height, width, edge = (_size_field(size, key) for key in ("height", "width", "shortest_edge"))
    kwargs: dict[str, Any] = {}
    if height and width:
        kwargs["image_size"] = [int(height), int(width)]
    elif edge:
        kwargs["image_size"] = int(edge)
    # processor: (x · r − m) / s on 0–255 pixels; ours: (x / 255 − m') / s', so m' = m / 255r, s' = s / 255r.
    scale = 255.0 * float(processor.rescale_factor) if getattr(processor, "do_rescale", True) else 255.0
    scale = 1.0 if math.isclose(scale, 1.0) else scale  # 255 · (1/255) is 1 up to rounding: keep means exact
    if getattr(processor, "do_normalize", True):
        mean, std = processor.image_mean, processor.image_std
    else:
        mean, std = 0.0, 1.0
    kwargs["image_mean"] = [float(v) / scale for v in _triple(mean)]
    kwargs["image_std"] = [float(v) / scale for v in _triple(std)]
    return kwargs


def _size_field(size: Any, key: str) -> Any:
    # transformers 5 keeps sizes in a `SizeDict` (attributes); older saved processors in plain dicts.
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def _triple(value: Any) -> list[float]:
    return [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]


def build_image_processor(settings: dict[str, Any]) -> Any:
    """A transformers image processor from its JSON settings (`image_processor_type` names the class;
    only transformers' own classes are built, as configs may come from anywhere)."""
    import transformers

    name = settings.get("image_processor_type") if isinstance(settings, dict) else None
    cls = getattr(transformers, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and hasattr(cls, "from_dict")):
        raise ValueError(
            f"ImagePreprocessor: image_processor needs the 'image_processor_type' of a transformers image "
            f"processor, got {name!r}."
        )
    return cls.from_dict({k: v for k, v in settings.items() if k != "image_processor_type"})


class ImagePreprocessor(ModalityPreprocessor):
    """Images → `[n, 3, H, W]` float tensor.

    Args:
        image_size: int or (height, width) the image is resized to (no crop: the aspect ratio is not kept,
            as in LLaVA's resize-only variants). Default 224.
        image_mean, image_std: per-channel normalisation; CLIP's statistics by default.

    With a hub encoder (`"transformers"`), the defaults come from that encoder's own image processor
    (`kwargs_from_hub`), so SigLIP gets SigLIP's statistics; values given explicitly still win.

        image_processor: a transformers image processor as JSON (`to_json_string()`, with its
            `image_processor_type`), run as it is in place of the resize above: an imported LLaVA
            (`AnyModalityLlava.from_llava`) keeps the exact pixels of its source's processor
            (CLIP's shortest-edge resize and centre crop). The other arguments are then unused.
    """

    modality = "image"
    defaults = {
        "image_size": 224,
        "image_mean": CLIP_IMAGE_MEAN,
        "image_std": CLIP_IMAGE_STD,
        "image_processor": None,
    }

    def _validate(self) -> None:
        owner = type(self).__name__
        self.size = size_pair(owner, "image_size", self.kwargs["image_size"])
        self.mean = channel_triple(owner, "image_mean", self.kwargs["image_mean"])
        self.std = channel_triple(owner, "image_std", self.kwargs["image_std"], positive=True)
        settings = self.kwargs["image_processor"]
        self.hub_processor = None if settings is None else build_image_processor(settings)

    def process_item(self, item: Any) -> torch.Tensor:
        if self.hub_processor is not None:
            return self.hub_processor(images=[load_image(item)], return_tensors="pt")["pixel_values"][0]
        return image_to_tensor(load_image(item), self.size, self.mean, self.std)

    kwargs_from_hub = staticmethod(image_kwargs_from_hub)


register_modality(
    ModalitySpec(
        name="image",
        file_extensions=IMAGE_EXTENSIONS,
        load=load_image,
        preprocessor_cls=ImagePreprocessor,
        default_encoder_type="transformers",
        pipeline_tag="image-text-to-text",
        example_file="cat.png",
        generator=ImageGenerator,
    )
)
