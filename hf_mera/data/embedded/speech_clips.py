"""The spoken colour words of the embedded audio set, shipped as package data.

The audio set's spoken clips ("a voice says red") are eSpeak NG recordings. They used to be made
at build time when `espeak-ng` happened to be installed, so the benchmark's content (and with it
the tiny LLM's vocabulary and every score) depended on an optional system package. The
recordings are now made once, by this module's `main`, and shipped in `speech/` beside it: every
machine builds the same benchmark, and `espeak-ng` is only needed to regenerate them::

    python -m hf_mera.data.embedded.speech_clips      # needs Debian's espeak-ng

`speech/SOURCE.json` records the eSpeak NG version and the exact command per file. The files are
eSpeak's own output (22.05 kHz, 16-bit PCM) stored losslessly as FLAC; `spoken_word` resamples
them to the benchmark's rate.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ...atomic import atomic_write_text
from .base import COLORS

SPEECH_DIR = Path(__file__).with_name("speech")
# A few voices' pitch and speed, so that a word is not one fixed waveform.
VOICE_PITCHES = (30, 50, 70)
VOICE_SPEEDS = (140, 175)


def clip_path(word: str, pitch: int, speed: int) -> Path:
    return SPEECH_DIR / f"{word}-p{pitch}-s{speed}.flac"


@functools.lru_cache(maxsize=64)
def spoken_word(word: str, pitch: int, speed: int, sample_rate: int) -> np.ndarray:
    """`word` spoken at voice `pitch` and `speed`, float32 in [-1, 1] at `sample_rate`."""
    import soundfile
    from scipy.signal import resample_poly

    path = clip_path(word, pitch, speed)
    if not path.is_file():
        raise ValueError(
            f"No shipped recording of {word!r} at pitch {pitch}, speed {speed} ({path}); the shipped "
            f"words are {sorted(COLORS)} at pitches {VOICE_PITCHES} and speeds {VOICE_SPEEDS}."
        )
    wave, rate = soundfile.read(path, dtype="float32")
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    if rate != sample_rate:
        divisor = np.gcd(sample_rate, rate)
        wave = resample_poly(wave, sample_rate // divisor, rate // divisor).astype(np.float32)
    peak = float(np.abs(wave).max()) or 1.0
    return wave / peak


def main() -> None:
    """Record every (word, pitch, speed) with espeak-ng into `speech/` and write `SOURCE.json`."""
    import soundfile

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is not on PATH (Debian: apt-get install espeak-ng).")
    version = subprocess.run([espeak, "--version"], capture_output=True, text=True, check=True).stdout
    SPEECH_DIR.mkdir(exist_ok=True)
    commands = {}
    with tempfile.TemporaryDirectory() as tmp:
        for word in sorted(COLORS):
            for pitch in VOICE_PITCHES:
                for speed in VOICE_SPEEDS:
                    wav = Path(tmp) / "word.wav"
                    command = ["espeak-ng", "-w", str(wav), "-p", str(pitch), "-s", str(speed), word]
                    subprocess.run(command, check=True, capture_output=True, timeout=30)
                    data, rate = soundfile.read(wav, dtype="int16")
                    target = clip_path(word, pitch, speed)
                    soundfile.write(target, data, rate, format="FLAC", subtype="PCM_16")
                    commands[target.name] = " ".join(["espeak-ng", "-w", "<file>", *command[3:]])
    source = {"espeak_ng_version": version.strip(), "files": commands}
    atomic_write_text(SPEECH_DIR / "SOURCE.json", json.dumps(source, indent=2, sort_keys=True) + "\n")
    print(f"Wrote {len(commands)} recordings to {SPEECH_DIR}.")


if __name__ == "__main__":
    main()
