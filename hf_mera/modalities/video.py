"""Video modality: decode with PyAV, sample frames uniformly, preprocess each frame like an image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from hf_mera.data.embedded.video import VideoGenerator

from .base import ModalityPreprocessor, ModalitySpec, existing_file, is_path, positive_int, register_modality
from .image import (
    CLIP_IMAGE_MEAN,
    CLIP_IMAGE_STD,
    ImagePreprocessor,
    image_kwargs_from_hub,
    image_to_tensor,
    load_image,
)

__all__ = ["VideoPreprocessor", "load_video", "sample_frame_indices"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpeg", ".mpg")


def sample_frame_indices(total_frames: int, num_frames: int) -> list[int]:
    """Centres of `num_frames` equal segments of `[0, total_frames)` (TSN-style uniform sampling).

    Short clips repeat frames rather than fail, so every video yields exactly `num_frames` frames.
    """
    if total_frames <= 0:
        raise ValueError("A video needs at least one frame.")
    return [int((i + 0.5) * total_frames / num_frames) for i in range(num_frames)]


def _decode(path: Path, keep: set[int] | None) -> tuple[dict[int, Image.Image], int]:
    """One decoding pass: frames whose index is in `keep` (all when None) and the decoded frame count."""
    import av  # lazy: PyAV loads FFmpeg

    kept: dict[int, Image.Image] = {}
    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"Cannot read video {path}: the file has no video stream.")
            stream = container.streams.video[0]
            if stream.codec_context is None:  # an unknown codec tag: nothing to decode it with
                raise ValueError(f"Cannot read video {path}: FFmpeg has no decoder for its video stream.")
            stream.thread_type = "AUTO"  # frame threads: decoding dominates loading time
            for frame in container.decode(stream):
                if keep is None or count in keep:
                    kept[count] = frame.to_image().convert("RGB")
                count += 1
    except ValueError as err:
        # PyAV's InvalidDataError is a ValueError too: make sure the path is in the message.
        if str(path) in str(err):
            raise
        raise ValueError(f"Cannot read video {path}: {err}") from err
    except (av.FFmpegError, OSError) as err:
        raise ValueError(f"Cannot read video {path}: {err}") from err
    if count == 0:
        raise ValueError(f"Cannot read video {path}: no frame could be decoded.")
    return kept, count


def _stream_frame_count(path: Path) -> int:
    """The container's frame count (0 when unknown); a file PyAV cannot open is a `ValueError`."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"Cannot read video {path}: the file has no video stream.")
            return int(container.streams.video[0].frames or 0)
    except (av.FFmpegError, OSError) as err:
        raise ValueError(f"Cannot read video {path}: {err}") from err


def _read_video_file(path: Path, num_frames: int | None) -> list[Image.Image]:
    """Decodes `path`; keeps only the sampled frames so long clips never sit in memory whole."""
    if num_frames is None:
        kept, _ = _decode(path, keep=None)
        return [kept[i] for i in sorted(kept)]
    declared = _stream_frame_count(path)
    if declared > 0:
        indices = sample_frame_indices(declared, num_frames)
        kept, count = _decode(path, keep=set(indices))
        if count == declared:
            return [kept[i] for i in indices]
    else:
        _, count = _decode(path, keep=set())
    # The container did not say, or said wrong: sample again over the true count.
    indices = sample_frame_indices(count, num_frames)
    kept, _ = _decode(path, keep=set(indices))
    return [kept[i] for i in indices]


def _frames_in_memory(item: Any) -> list[Image.Image]:
    """A `[T, H, W, 3]` array or a list of PIL images / HWC arrays as a list of RGB images."""
    if isinstance(item, np.ndarray):
        if item.ndim != 4:
            raise ValueError(f"Video arrays must be [T, H, W, C], got shape {tuple(item.shape)}.")
        return [load_image(frame) for frame in item]
    if isinstance(item, (list, tuple)) and item and not is_path(item[0]):
        return [load_image(frame) for frame in item]
    raise ValueError(
        f"Cannot read video from a {type(item).__name__}; pass a path, a [T, H, W, 3] array or a list of frames."
    )


def load_video(item: Any, num_frames: int | None = None) -> list[Image.Image]:
    """Reads one video (path, `[T, H, W, 3]` array, or list of frames) as a list of RGB PIL frames.

    With `num_frames`, returns exactly that many frames sampled at `sample_frame_indices`; without, all
    frames. Corrupt files or files with no video stream raise `ValueError` naming the path.
    """
    if is_path(item):
        return _read_video_file(existing_file(item, "video"), num_frames)
    frames = _frames_in_memory(item)
    if num_frames is None:
        return frames
    return [frames[i] for i in sample_frame_indices(len(frames), num_frames)]


class VideoPreprocessor(ModalityPreprocessor):
    """Videos → `[n, num_frames, 3, H, W]`: uniform frame sampling, then each frame as an image.

    Args:
        num_frames: frames sampled uniformly over the clip (the paper uses 4). Default 4.
        image_size, image_mean, image_std: per-frame preprocessing, see `ImagePreprocessor`; with a hub
            frame encoder, its own image processor gives the defaults.
    """

    modality = "video"
    defaults = {
        "num_frames": 4,
        "image_size": 224,
        "image_mean": CLIP_IMAGE_MEAN,
        "image_std": CLIP_IMAGE_STD,
    }

    def _validate(self) -> None:
        self.num_frames = positive_int(type(self).__name__, "num_frames", self.kwargs["num_frames"])
        frame_kwargs = {key: self.kwargs[key] for key in ("image_size", "image_mean", "image_std")}
        self._frames = ImagePreprocessor(**frame_kwargs)  # reuses the image checks and settings

    # Frames are images to the frame encoder: its image processor's settings apply as they are.
    kwargs_from_hub = staticmethod(image_kwargs_from_hub)

    def process_item(self, item: Any) -> torch.Tensor:
        frames = load_video(item, num_frames=self.num_frames)
        prep = self._frames
        return torch.stack([image_to_tensor(frame, prep.size, prep.mean, prep.std) for frame in frames])


register_modality(
    ModalitySpec(
        name="video",
        file_extensions=VIDEO_EXTENSIONS,
        load=load_video,
        preprocessor_cls=VideoPreprocessor,
        default_encoder_type="video_frames",
        pipeline_tag="video-text-to-text",
        example_file="clip.mp4",
        generator=VideoGenerator,
    )
)
