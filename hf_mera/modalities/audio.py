"""Audio modality: soundfile (PyAV fallback) → mono float32 → polyphase resampling → fixed length."""

from __future__ import annotations

from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_mera.data.embedded.audio import AudioGenerator

from .base import (
    ModalityPreprocessor,
    ModalitySpec,
    existing_file,
    is_path,
    positive_int,
    positive_number,
    register_modality,
)

__all__ = ["AudioPreprocessor", "load_audio", "resample"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".au")


def _to_mono(waveform: np.ndarray) -> np.ndarray:
    """Averages channels; for 2-D input the shorter axis is taken to be the channel axis."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 2:
        waveform = waveform.mean(axis=int(np.argmin(waveform.shape)))
    if waveform.ndim != 1:
        raise ValueError(f"Waveforms must be 1-D or 2-D (channels, samples), got shape {waveform.shape}.")
    return waveform


def _read_with_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1), int(rate)


def _read_with_pyav(path: Path) -> tuple[np.ndarray, int]:
    """Decodes the first audio stream of anything FFmpeg reads (mp3, m4a, the audio of a video...)."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"Cannot read audio {path}: the file has no audio stream.")
        stream = container.streams.audio[0]
        if stream.codec_context is None:  # an unknown codec tag: PyAV's stream then has no attributes
            raise ValueError(f"Cannot read audio {path}: FFmpeg has no decoder for its audio stream.")
        rate = int(stream.rate or stream.codec_context.sample_rate)
        # Packed float mono at the native rate: our resampler does the rate change.
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = [
            out.to_ndarray().reshape(-1)
            for frame in container.decode(stream)
            for out in resampler.resample(frame)
        ]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    if not chunks:
        raise ValueError(f"Cannot read audio {path}: no sample could be decoded.")
    return np.concatenate(chunks).astype(np.float32), rate


def _read_audio_file(path: Path) -> tuple[np.ndarray, int]:
    """soundfile first (exact, fast); PyAV for the containers libsndfile does not know."""
    import av

    try:
        return _read_with_soundfile(path)
    except RuntimeError as sf_err:  # soundfile.LibsndfileError
        try:
            return _read_with_pyav(path)
        except ValueError as err:
            if str(path) in str(err):
                raise
            raise ValueError(f"Cannot read audio {path}: {sf_err}; FFmpeg: {err}") from err
        except (av.FFmpegError, OSError) as err:
            raise ValueError(f"Cannot read audio {path}: {sf_err}; FFmpeg: {err}") from err


def load_audio(item: Any) -> tuple[np.ndarray, int]:
    """Reads one audio item as `(mono float32 waveform, sampling_rate)`.

    Accepts a path, a `(waveform, sampling_rate)` tuple, or a `datasets`-style dict with `array` and
    `sampling_rate`. Corrupt, empty or mislabelled files raise `ValueError` naming the path.
    """
    if is_path(item):
        path = existing_file(item, "audio")
        waveform, rate = _read_audio_file(path)
        if waveform.size == 0:
            raise ValueError(f"Cannot read audio {path}: it holds no samples.")
        return waveform, rate
    if isinstance(item, dict) and {"array", "sampling_rate"} <= set(item):
        item = (item["array"], item["sampling_rate"])
    if isinstance(item, tuple) and len(item) == 2:
        waveform, rate = item
        if isinstance(waveform, torch.Tensor):
            waveform = waveform.detach().cpu().numpy()
        waveform = _to_mono(waveform)
        positive_int("load_audio", "sampling_rate", rate)
        if waveform.size == 0 or not np.isfinite(waveform).all():
            raise ValueError("In-memory waveforms must be non-empty and finite.")
        return waveform, int(rate)
    raise ValueError(
        f"Cannot read audio from a {type(item).__name__}; pass a path or a (waveform, sampling_rate) tuple."
    )


def resample(waveform: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased) with the smallest integer up/down factors."""
    if orig_rate == target_rate:
        return waveform
    from scipy.signal import resample_poly

    divisor = gcd(orig_rate, target_rate)
    return resample_poly(waveform, target_rate // divisor, orig_rate // divisor).astype(np.float32)


def fix_length(waveform: np.ndarray, num_samples: int) -> np.ndarray:
    """Keeps the first `num_samples` samples, zero-padding at the end of short clips."""
    if waveform.shape[0] >= num_samples:
        return waveform[:num_samples]
    return np.pad(waveform, (0, num_samples - waveform.shape[0]))


class AudioPreprocessor(ModalityPreprocessor):
    """Audio → `[n, sampling_rate * max_seconds]` waveforms, or a feature extractor's features.

    Args:
        sampling_rate: target rate in Hz. Default 16000.
        max_seconds: clips are cropped / zero-padded to this length so a batch stacks. Default 10.
        feature_extractor: optional name of a transformers feature-extractor class (e.g.
            `"WhisperFeatureExtractor"` → log-mel `input_features`), built offline from
            `feature_extractor_kwargs` and applied to the fixed-length waveform.
        feature_extractor_kwargs: kwargs for that class (e.g. `{"feature_size": 80}`).

    With a hub encoder (`"transformers"`: Whisper, AST, ...), the defaults of `feature_extractor`,
    `feature_extractor_kwargs` and `sampling_rate` come from that encoder's own feature extractor
    (`kwargs_from_hub`); values given explicitly still win.
    """

    modality = "audio"
    defaults = {
        "sampling_rate": 16000,
        "max_seconds": 10.0,
        "feature_extractor": None,
        "feature_extractor_kwargs": {},
    }

    def _validate(self) -> None:
        owner = type(self).__name__
        self.sampling_rate = positive_int(owner, "sampling_rate", self.kwargs["sampling_rate"])
        self.num_samples = round(
            positive_number(owner, "max_seconds", self.kwargs["max_seconds"]) * self.sampling_rate
        )
        self._extractor = self._build_feature_extractor()

    def _build_feature_extractor(self) -> Any:
        name, kwargs = self.kwargs["feature_extractor"], self.kwargs["feature_extractor_kwargs"]
        owner = type(self).__name__
        if not isinstance(kwargs, dict):
            raise ValueError(f"{owner}: feature_extractor_kwargs must be a dict, got {kwargs!r}.")
        if name is None:
            return None
        import transformers  # lazy: only Whisper-style encoders need it

        cls = getattr(transformers, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, transformers.FeatureExtractionMixin)):
            raise ValueError(
                f"{owner}: feature_extractor {name!r} is not a transformers feature-extractor class."
            )
        extractor = cls(**kwargs)
        if getattr(extractor, "sampling_rate", self.sampling_rate) != self.sampling_rate:
            raise ValueError(
                f"{owner}: feature_extractor {name} expects {extractor.sampling_rate} Hz but sampling_rate is "
                f"{self.sampling_rate}; set one to match the other."
            )
        return extractor

    @staticmethod
    def kwargs_from_hub(extractor: Any) -> dict[str, Any]:
        """The settings that rebuild `extractor` (a transformers feature extractor) offline."""
        # to_dict() is what from_pretrained hands back to the class; the type name is not an argument.
        kwargs = {
            k: v
            for k, v in extractor.to_dict().items()
            if k not in ("feature_extractor_type", "processor_class")
        }
        return {
            "sampling_rate": int(extractor.sampling_rate),
            "feature_extractor": type(extractor).__name__,
            "feature_extractor_kwargs": kwargs,
        }

    def process_item(self, item: Any) -> torch.Tensor:
        waveform, rate = load_audio(item)
        waveform = fix_length(resample(waveform, rate, self.sampling_rate), self.num_samples)
        if self._extractor is None:
            return torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
        features = self._extractor([waveform], sampling_rate=self.sampling_rate, return_tensors="pt")
        return features[self._extractor.model_input_names[0]][0].float()


register_modality(
    ModalitySpec(
        name="audio",
        file_extensions=AUDIO_EXTENSIONS,
        load=load_audio,
        preprocessor_cls=AudioPreprocessor,
        default_encoder_type="spectrogram",
        pipeline_tag="audio-text-to-text",
        example_file="speech.wav",
        generator=AudioGenerator,
    )
)
