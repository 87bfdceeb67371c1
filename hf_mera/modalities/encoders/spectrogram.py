"""`"spectrogram"` encoder: a small built-in audio encoder that is informative without training.

Waveform `[n, samples]` → log-mel spectrogram (torch.stft, Hann window, transformers' HTK mel filterbank)
→ the frames split into `num_tokens` equal time patches → per patch the mean log-mel frame and the mean
absolute frame-to-frame delta (onsets, tone changes) → a projection to `hidden_size`.

The projection is an `nn.Linear` with a seeded orthogonal initialisation: when `hidden_size >= 2·n_mels`
it is injective, so pitch (which mel bins light up), the number of simultaneous tones, onsets and
duration (how many patches are silent) all survive into the features even if the encoder is never
trained. It is trainable like any other layer when `freeze_encoder` is False. BEATs (the paper's audio
encoder) has no weights on PyPI; for real pretrained audio features use `"transformers"` with Whisper/AST.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import ModalityEncoder, register_encoder, seeded

__all__ = ["SpectrogramEncoder", "mel_filterbank"]

_LOG_FLOOR = 1e-8  # -80 dB: silence (and zero padding) maps to exactly 0


def mel_filterbank(n_freqs: int, n_mels: int, sampling_rate: int, f_min: float = 0.0) -> torch.Tensor:
    """Triangular HTK-mel filters `[n_freqs, n_mels]` over the `n_freqs` bins of a one-sided STFT, from
    `f_min` to Nyquist, without area normalisation (transformers' `mel_filter_bank`, as float32)."""
    from transformers.audio_utils import mel_filter_bank  # lazy: transformers is not needed to import us

    # Computed in float64 and rounded once: within 1e-5 of the float32 torch code it replaced, not bitwise.
    filters = mel_filter_bank(
        num_frequency_bins=n_freqs,
        num_mel_filters=n_mels,
        min_frequency=f_min,
        max_frequency=sampling_rate / 2.0,
        sampling_rate=sampling_rate,
        norm=None,
        mel_scale="htk",
        dtype=np.float32,
    )
    return torch.from_numpy(filters)


@register_encoder("spectrogram")
class SpectrogramEncoder(ModalityEncoder):
    """Log-mel patch tokens (see module docstring). Defaults: 64 mels, 25 ms window, 10 ms hop at 16 kHz,
    32 tokens of 256."""

    default_config = {
        "sampling_rate": 16000,
        "n_mels": 64,
        "window_ms": 25.0,
        "hop_ms": 10.0,
        "num_tokens": 32,
        "hidden_size": 256,
        "seed": 0,
    }

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        for key in ("sampling_rate", "n_mels", "num_tokens", "hidden_size"):
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"spectrogram: {key} must be a positive int, got {value!r}.")
        rate = config["sampling_rate"]
        self.win_length = round(rate * float(config["window_ms"]) / 1000.0)
        self.hop_length = round(rate * float(config["hop_ms"]) / 1000.0)
        if self.win_length < 2 or self.hop_length < 1:
            raise ValueError("spectrogram: window_ms and hop_ms are too short for the sampling_rate.")
        self.n_fft = 2 ** math.ceil(math.log2(self.win_length))
        # Derived from the config, so not persistent: checkpoints hold only the projection.
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        filters = mel_filterbank(self.n_fft // 2 + 1, config["n_mels"], rate)
        self.register_buffer("mel_filters", filters, persistent=False)
        self.num_tokens = config["num_tokens"]
        self.hidden_size = config["hidden_size"]
        with seeded(int(config["seed"])):
            self.proj = nn.Linear(2 * config["n_mels"], self.hidden_size, bias=False)
            # In float32, then copied: QR has no bf16 CPU kernel, and `from_pretrained(dtype=bfloat16)`
            # builds modules under that default dtype. Same random draws as initialising in place.
            weight = nn.init.orthogonal_(torch.empty(self.proj.weight.shape, dtype=torch.float32))
            with torch.no_grad():
                self.proj.weight.copy_(weight)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """`[n, samples]` → log-mel `[n, n_mels, frames]` in [0, ~1]: 0 is silence (-80 dB), a full-scale
        tone's bin is about 0.85. Silence at 0 keeps padded clips from sharing a large common component."""
        # The STFT runs in float32 even in a half-precision model (whose buffers are then half too).
        window = self.window.float()
        spec = torch.stft(
            waveform.float(),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec.abs() ** 2 / window.sum() ** 2  # a full-scale sine peaks near 0.25
        mel = torch.einsum("fm,nft->nmt", self.mel_filters.float(), power)
        return torch.log10(mel.clamp_min(_LOG_FLOOR) / _LOG_FLOOR) / 8.0

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        if values.ndim == 3 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 2 or values.shape[1] < self.win_length:
            raise ValueError(
                f"spectrogram expects waveforms [n, samples >= {self.win_length}], got {list(values.shape)}."
            )
        log_mel = self.log_mel(values.float().to(self.window.device))
        means = F.adaptive_avg_pool1d(log_mel, self.num_tokens)
        deltas = F.adaptive_avg_pool1d(log_mel.diff(dim=-1).abs(), self.num_tokens)
        features = torch.cat([means, deltas], dim=1).transpose(1, 2)  # [n, num_tokens, 2 * n_mels]
        return self.proj(features.to(self.proj.weight.dtype))
