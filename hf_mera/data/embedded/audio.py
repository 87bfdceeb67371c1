"""Audio part of the embedded benchmark: 16 kHz WAV beep sequences and spoken words.

A clip is `CLIP_SECONDS` long and holds 1-4 beeps that are all low or high, short or long, and
pure (sine) or buzzy (square): "three short high buzzy beeps". A share of the clips
(`EmbeddedSizes.speech_fraction`) instead has a voice saying a colour word ("a voice says red"),
from the eSpeak NG recordings shipped with the package (`speech_clips`): no system package is
needed, so every machine builds the same clips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    COLORS,
    NUMBER_WORDS,
    Attributes,
    EmbeddedModality,
    QuestionType,
    choose,
)
from .speech_clips import VOICE_PITCHES, VOICE_SPEEDS, spoken_word

SAMPLE_RATE = 16_000
CLIP_SECONDS = 2.0
PITCH_HZ = {"low": (250.0, 400.0), "high": (1000.0, 1600.0)}
LENGTH_S = {"short": (0.08, 0.12), "long": (0.25, 0.30)}
GAP_S = (0.08, 0.12)
TIMBRES = ("pure", "buzzy")


def beep(frequency: float, seconds: float, timbre: str) -> np.ndarray:
    """One beep with 5 ms fades (no clicks)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = np.sin(2 * np.pi * frequency * t)
    if timbre == "buzzy":
        wave = np.sign(wave) * 0.6  # a square wave sounds louder: lower it to a similar loudness
    fade = min(len(t) // 2, int(0.005 * SAMPLE_RATE))
    envelope = np.ones_like(t)
    envelope[:fade] = np.linspace(0, 1, fade)
    envelope[len(t) - fade :] = np.linspace(1, 0, fade)
    return wave * envelope


def render_audio(attributes: Attributes) -> np.ndarray:
    """The clip's samples, float32 mono at `SAMPLE_RATE`."""
    clip = np.zeros(int(CLIP_SECONDS * SAMPLE_RATE), dtype=np.float64)
    start = int(attributes["onset"] * SAMPLE_RATE)
    if attributes["kind"] == "speech":
        word = spoken_word(
            attributes["word"], attributes["voice_pitch"], attributes["voice_speed"], SAMPLE_RATE
        )
        word = word[: len(clip) - start]
        clip[start : start + len(word)] += attributes["amplitude"] * word
    else:
        for seconds, gap in zip(attributes["beep_seconds"], attributes["gap_seconds"]):
            tone = beep(attributes["frequency"], seconds, attributes["timbre"])
            clip[start : start + len(tone)] += attributes["amplitude"] * tone
            start += len(tone) + int(gap * SAMPLE_RATE)
    noise = np.random.default_rng(attributes["noise_seed"]).normal(0.0, 0.003, size=clip.shape)
    return np.clip(clip + noise, -1.0, 1.0).astype(np.float32)


class AudioGenerator(EmbeddedModality):
    """Beep sequences and spoken colour words as 16 kHz mono WAV files.

    Options: `speech_fraction` (share of spoken clips; 0 disables them).
    """

    caption_prompt = "describe the sound"
    BEEP_QUESTIONS = (
        QuestionType("count", "how many beeps are there?", NUMBER_WORDS, "count", (("kind", "beeps"),)),
        QuestionType("pitch", "are the beeps high or low?", ("high", "low"), "pitch", (("kind", "beeps"),)),
        QuestionType(
            "length", "are the beeps short or long?", ("short", "long"), "length", (("kind", "beeps"),)
        ),
        QuestionType("timbre", "are the beeps pure or buzzy?", TIMBRES, "timbre", (("kind", "beeps"),)),
    )
    SPEECH_QUESTION = QuestionType(
        "word", "what word does the voice say?", tuple(COLORS), "word", (("kind", "speech"),)
    )

    @property
    def speech_fraction(self) -> float:
        return float(self.options.get("speech_fraction", 0.0))

    def question_types(self) -> tuple[QuestionType, ...]:
        return self.BEEP_QUESTIONS + ((self.SPEECH_QUESTION,) if self.speech_fraction > 0 else ())

    def sample_attributes(self, rng: np.random.Generator, split: str, **constraints: Any) -> Attributes:
        kind = constraints.get("kind") or ("speech" if rng.random() < self.speech_fraction else "beeps")
        attributes: Attributes = {
            "kind": kind,
            "amplitude": float(rng.uniform(0.3, 0.6)),
            "noise_seed": int(rng.integers(2**31)),
        }
        if kind == "speech":
            word = constraints.get("word") or choose(rng, tuple(COLORS))
            attributes.update(
                word=word,
                voice_pitch=int(choose(rng, VOICE_PITCHES)),
                voice_speed=int(choose(rng, VOICE_SPEEDS)),
                onset=float(rng.uniform(0.0, 0.8)),
            )
            return attributes
        count = constraints.get("count") or choose(rng, NUMBER_WORDS)
        pitch = constraints.get("pitch") or choose(rng, tuple(PITCH_HZ))
        length = constraints.get("length") or choose(rng, tuple(LENGTH_S))
        n = NUMBER_WORDS.index(count) + 1
        beeps = [float(rng.uniform(*LENGTH_S[length])) for _ in range(n)]
        gaps = [float(rng.uniform(*GAP_S)) for _ in range(n)]
        used = sum(beeps) + sum(gaps[:-1])
        attributes.update(
            count=count,
            pitch=pitch,
            length=length,
            timbre=constraints.get("timbre") or choose(rng, TIMBRES),
            frequency=float(rng.uniform(*PITCH_HZ[pitch])),
            beep_seconds=beeps,
            gap_seconds=gaps,
            # Anywhere in the clip, with at least 50 ms of silence after the last beep.
            onset=float(rng.uniform(0.0, max(0.0, CLIP_SECONDS - used - 0.05))),
        )
        return attributes

    def write(self, attributes: Attributes, folder: Path, stem: str, rng: np.random.Generator) -> str:
        import soundfile

        name = f"{stem}.wav"
        soundfile.write(folder / name, render_audio(attributes), SAMPLE_RATE, subtype="PCM_16")
        return name

    def caption(self, attributes: Attributes) -> str:
        if attributes["kind"] == "speech":
            return f"a voice says {attributes['word']}"
        noun = "beep" if attributes["count"] == "one" else "beeps"
        return f"{attributes['count']} {attributes['length']} {attributes['pitch']} {attributes['timbre']} {noun}"
