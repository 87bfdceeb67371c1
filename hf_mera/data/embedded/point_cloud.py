"""Point-cloud part of the embedded benchmark: coloured points sampled from trimesh primitives.

A cloud is `NUM_POINTS` points on the surface of a box, sphere, cylinder, cone, torus or capsule,
first scaled to a unit bounding box, then stretched tall or flat, scaled by a random overall size
and turned about the vertical axis; every point carries the object's colour (with a little noise).
Files are `[N, 6]` float32 `.npy` (x, y, z, r, g, b with colours in [0, 1], as Cap3D / Point-BERT
expect); about one in five is written as a coloured `.ply` instead, so that both loaders are
exercised. Captions: "a tall red cone".

The overall size varies (`SCALE_RANGE`) but is not named in captions or questions: point-cloud
preprocessing (hf_mera.modalities, Point-BERT) normalises each cloud to the unit sphere, which
erases size, so "small or large" could not be answered from the encoder's input. Aspect survives
that normalisation. Colour reaches the encoder only with the preprocessor's `use_color=True`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from .base import COLORS, Attributes, EmbeddedModality, QuestionType, choose

NUM_POINTS = 1024
PLY_FRACTION = 0.2
SHAPES_3D = ("box", "sphere", "cylinder", "cone", "torus", "capsule")
SCALE_RANGE = (0.5, 1.0)  # an unlabelled nuisance: normalisation removes it (module docstring)
# Extents (x and y, z) after the unit bounding box: tall is twice as high as wide, flat a third.
ASPECTS = {"tall": (0.6, 1.2), "flat": (1.2, 0.4)}


@functools.cache
def unit_mesh(shape: str):
    """The primitive `shape`, centred and scaled to a unit bounding box."""
    import trimesh.creation as creation

    builders = {
        "box": lambda: creation.box(extents=(1.0, 1.0, 1.0)),
        "sphere": lambda: creation.icosphere(subdivisions=3, radius=0.5),
        "cylinder": lambda: creation.cylinder(radius=0.5, height=1.0, sections=32),
        "cone": lambda: creation.cone(radius=0.5, height=1.0, sections=32),
        "torus": lambda: creation.torus(major_radius=0.35, minor_radius=0.15),
        "capsule": lambda: creation.capsule(height=0.5, radius=0.25),
    }
    mesh = builders[shape]()
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    mesh.apply_scale(1.0 / mesh.extents)  # per-axis: every primitive starts as a unit cube's extent
    return mesh


def render_points(attributes: Attributes) -> np.ndarray:
    """The cloud as `[NUM_POINTS, 6]` float32 (xyz, rgb in [0, 1])."""
    import trimesh

    rng = np.random.default_rng(attributes["points_seed"])
    points, _ = trimesh.sample.sample_surface(unit_mesh(attributes["shape"]), NUM_POINTS, seed=rng)
    width, height = ASPECTS[attributes["aspect"]]
    scale = attributes["scale"]
    points = points * np.array([width, width, height]) * scale
    angle = attributes["angle"]
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]]
    )
    points = points @ rotation.T
    colors = np.array(COLORS[attributes["color"]], dtype=np.float64) / 255.0
    colors = np.clip(colors + rng.normal(0.0, 0.03, size=(NUM_POINTS, 3)), 0.0, 1.0)
    return np.concatenate([points, colors], axis=1).astype(np.float32)


def write_ply(path: Path, cloud: np.ndarray) -> None:
    """A coloured point cloud as PLY (colours as 8-bit RGBA, the PLY convention)."""
    import trimesh

    rgba = np.concatenate([np.round(cloud[:, 3:6] * 255), np.full((len(cloud), 1), 255)], axis=1).astype(
        np.uint8
    )
    trimesh.PointCloud(cloud[:, :3], colors=rgba).export(str(path))


class PointCloudGenerator(EmbeddedModality):
    """Coloured primitives: "a tall red cone"."""

    caption_prompt = "describe the point cloud"
    QUESTION_TYPES = (
        QuestionType("shape", "what shape is this?", SHAPES_3D, "shape"),
        QuestionType("color", "what color is it?", tuple(COLORS), "color"),
        QuestionType("aspect", "is it tall or flat?", tuple(ASPECTS), "aspect"),
    )

    def question_types(self) -> tuple[QuestionType, ...]:
        return self.QUESTION_TYPES

    def sample_attributes(self, rng: np.random.Generator, split: str, **constraints: Any) -> Attributes:
        return {
            "shape": constraints.get("shape") or choose(rng, SHAPES_3D),
            "color": constraints.get("color") or choose(rng, tuple(COLORS)),
            "aspect": constraints.get("aspect") or choose(rng, tuple(ASPECTS)),
            "scale": float(rng.uniform(*SCALE_RANGE)),
            "angle": float(rng.uniform(0.0, 2 * np.pi)),
            "points_seed": int(rng.integers(2**31)),
            "format": "ply" if rng.random() < PLY_FRACTION else "npy",
        }

    def write(self, attributes: Attributes, folder: Path, stem: str, rng: np.random.Generator) -> str:
        cloud = render_points(attributes)
        name = f"{stem}.{attributes['format']}"
        if attributes["format"] == "ply":
            write_ply(folder / name, cloud)
        else:
            np.save(folder / name, cloud)
        return name

    def caption(self, attributes: Attributes) -> str:
        return f"a {attributes['aspect']} {attributes['color']} {attributes['shape']}"
