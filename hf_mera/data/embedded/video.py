"""Video part of the embedded benchmark: short mp4 clips of a shape that moves or changes colour.

Each clip is `NUM_FRAMES` frames of `FRAME_SIZE`^2 RGB at `FPS`, encoded with PyAV's bundled FFmpeg
(libx264 when available, else mpeg4). A circle, rectangle or triangle of one colour either moves
left/right/up/down across the frame ("a blue rectangle moves left") or stays and turns another
colour halfway ("a blue rectangle turns red"). Answers need more than one frame: the direction
and the colour change are only visible over time.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    COLORS,
    SHAPES_2D,
    Attributes,
    EmbeddedModality,
    QuestionType,
    choose,
)

NUM_FRAMES = 12
FRAME_SIZE = 64
FPS = 8
DIRECTIONS = ("left", "right", "up", "down")
MOTIONS = ("move", "turn")
_STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (dx, dy) in image coordinates


@functools.lru_cache(maxsize=1)
def video_codec() -> str:
    """libx264 when the bundled FFmpeg has it (it nearly always does), else mpeg4."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def shape_mask(shape: str, size: int) -> np.ndarray:
    """A boolean `size` x `size` mask of a filled circle, square or upward triangle."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    if shape == "circle":
        return (xx - size / 2) ** 2 + (yy - size / 2) ** 2 <= (size / 2) ** 2
    if shape == "rectangle":
        return np.ones((size, size), dtype=bool)
    # Triangle: apex at the top centre, base along the bottom.
    return np.abs(xx - size / 2) <= yy / 2


def render_frames(attributes: Attributes) -> np.ndarray:
    """The clip's frames, `[NUM_FRAMES, FRAME_SIZE, FRAME_SIZE, 3]` uint8."""
    size = attributes["size"]
    mask = shape_mask(attributes["shape"], size)
    background = np.array(attributes["background"], dtype=np.uint8)
    frames = np.empty((NUM_FRAMES, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    x0, y0 = attributes["start"]
    dx, dy = _STEP.get(attributes.get("direction") or "", (0, 0))
    for t in range(NUM_FRAMES):
        frames[t] = background
        if attributes["motion"] == "move":
            x = round(x0 + dx * attributes["speed"] * t)
            y = round(y0 + dy * attributes["speed"] * t)
            color = COLORS[attributes["color"]]
        else:
            x, y = x0, y0
            # Turn in the middle of the clip, so that both colours are seen for half the frames.
            color = COLORS[attributes["color"] if t < NUM_FRAMES // 2 else attributes["end_color"]]
        frames[t, y : y + size, x : x + size][mask] = color
    return frames


def write_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """Encodes RGB frames to an mp4 file with PyAV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(video_codec(), rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if stream.codec_context.name == "libx264":
            # Near-lossless and fast: colours must survive compression at 64x64.
            stream.options = {"crf": "18", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


class VideoGenerator(EmbeddedModality):
    """Moving or colour-changing shapes in mp4 clips."""

    caption_prompt = "describe the video"
    QUESTION_TYPES = (
        QuestionType("shape", "what shape is in the video?", SHAPES_2D, "shape"),
        QuestionType("color", "what color is the shape?", tuple(COLORS), "color", (("motion", "move"),)),
        QuestionType(
            "direction", "which way does the shape move?", DIRECTIONS, "direction", (("motion", "move"),)
        ),
        QuestionType("moves", "does the shape move?", ("yes", "no"), "moves"),
        QuestionType(
            "end_color", "what color does the shape turn?", tuple(COLORS), "end_color", (("motion", "turn"),)
        ),
    )

    def question_types(self) -> tuple[QuestionType, ...]:
        return self.QUESTION_TYPES

    def sample_attributes(self, rng: np.random.Generator, split: str, **constraints: Any) -> Attributes:
        if "moves" in constraints:  # the yes/no question is about the motion kind
            constraints.setdefault("motion", "move" if constraints.pop("moves") == "yes" else "turn")
        motion = constraints.get("motion") or choose(rng, MOTIONS)
        color = constraints.get("color") or choose(rng, tuple(COLORS), exclude=constraints.get("end_color"))
        size = int(rng.integers(14, 21))
        attributes: Attributes = {
            "shape": constraints.get("shape") or choose(rng, SHAPES_2D),
            "color": color,
            "motion": motion,
            "moves": "yes" if motion == "move" else "no",
            "size": size,
            # A light, slightly tinted background: never mistaken for one of the shape colours.
            "background": [int(v) for v in rng.integers(225, 250, size=3)],
        }
        free = FRAME_SIZE - size
        if motion == "move":
            direction = constraints.get("direction") or choose(rng, DIRECTIONS)
            speed = float(rng.uniform(2.0, free / (NUM_FRAMES - 1)))
            travel = int(np.ceil(speed * (NUM_FRAMES - 1)))
            dx, dy = _STEP[direction]
            # Start where the whole path stays inside the frame.
            x_lo, x_hi = (travel, free) if dx < 0 else (0, free - travel) if dx > 0 else (0, free)
            y_lo, y_hi = (travel, free) if dy < 0 else (0, free - travel) if dy > 0 else (0, free)
            attributes.update(
                direction=direction,
                speed=speed,
                start=[int(rng.integers(x_lo, x_hi + 1)), int(rng.integers(y_lo, y_hi + 1))],
                end_color=None,
            )
        else:
            end_color = constraints.get("end_color") or choose(rng, tuple(COLORS), exclude=color)
            if end_color == color:
                raise ValueError(f"A colour change needs two colours, got {color!r} twice.")
            attributes.update(
                direction=None,
                speed=0.0,
                start=[int(rng.integers(0, free + 1)), int(rng.integers(0, free + 1))],
                end_color=end_color,
            )
        return attributes

    def write(self, attributes: Attributes, folder: Path, stem: str, rng: np.random.Generator) -> str:
        name = f"{stem}.mp4"
        write_mp4(folder / name, render_frames(attributes))
        return name

    def caption(self, attributes: Attributes) -> str:
        if attributes["motion"] == "move":
            return f"a {attributes['color']} {attributes['shape']} moves {attributes['direction']}"
        return f"a {attributes['color']} {attributes['shape']} turns {attributes['end_color']}"
