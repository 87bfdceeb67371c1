"""Point-cloud modality: arrays or meshes → centred unit-sphere points, farthest-point sampled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_mera.data.embedded.point_cloud import PointCloudGenerator

from .base import ModalityPreprocessor, ModalitySpec, existing_file, is_path, positive_int, register_modality

__all__ = ["PointCloudPreprocessor", "farthest_point_sample", "load_point_cloud", "normalize_points"]

MESH_EXTENSIONS = (".ply", ".obj", ".glb", ".gltf", ".off", ".stl")
POINT_CLOUD_EXTENSIONS = (".npy", ".npz", *MESH_EXTENSIONS)
_POINT_KEYS = ("points", "xyz")
_COLOR_KEYS = ("rgb", "colors")
_DEFAULT_MESH_SAMPLES = 8192


def farthest_point_sample(points: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Indices `[n, num_samples]` of farthest-point samples of `points` `[n, P, 3]`.

    Deterministic: starts at index 0, then repeatedly takes the point farthest from those chosen (ties go
    to the lowest index). Needs `num_samples <= P`.
    """
    n, num_points, _ = points.shape
    chosen = torch.zeros(n, num_samples, dtype=torch.long, device=points.device)
    min_dist = torch.full((n, num_points), float("inf"), device=points.device, dtype=points.dtype)
    farthest = torch.zeros(n, dtype=torch.long, device=points.device)
    batch = torch.arange(n, device=points.device)
    for step in range(num_samples):
        chosen[:, step] = farthest
        centre = points[batch, farthest].unsqueeze(1)
        min_dist = torch.minimum(min_dist, ((points - centre) ** 2).sum(-1))
        farthest = min_dist.argmax(-1)
    return chosen


def normalize_points(xyz: np.ndarray) -> np.ndarray:
    """Centres on the centroid and scales so the farthest point lies on the unit sphere."""
    centred = xyz - xyz.mean(axis=0, keepdims=True)
    radius = float(np.linalg.norm(centred, axis=1).max())
    return centred / radius if radius > 0 else centred  # a single repeated point stays at the origin


def _colors_01(colors: np.ndarray) -> np.ndarray:
    """RGB(A) in [0, 255] or [0, 1] → float RGB in [0, 1]."""
    rgb = np.asarray(colors[:, :3], dtype=np.float32)
    return rgb / 255.0 if rgb.size and rgb.max() > 1.0 else rgb


def _from_array(array: Any, colors: Any = None) -> np.ndarray:
    """An `[N, 3]` or `[N, 6]` (xyz + rgb) array, with optional separate colours, as `[N, 3|6]` float32."""
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] not in (3, 6) or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"point arrays must be numeric [N, 3] or [N, 6], got shape {array.shape}")
    xyz = array[:, :3].astype(np.float32)
    rgb = _colors_01(array[:, 3:]) if array.shape[1] == 6 else None
    if colors is not None:
        colors = np.asarray(colors)
        if colors.ndim != 2 or colors.shape[0] != xyz.shape[0] or colors.shape[1] not in (3, 4):
            raise ValueError(
                f"colours must be [N, 3] or [N, 4] matching {xyz.shape[0]} points, got {colors.shape}"
            )
        rgb = _colors_01(colors)
    return xyz if rgb is None else np.concatenate([xyz, rgb], axis=1)


def _read_npz(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.keys())
        if not keys:
            raise ValueError("the archive holds no array")
        point_key = next((key for key in _POINT_KEYS if key in keys), keys[0])
        color_key = next((key for key in _COLOR_KEYS if key in keys), None)
        return _from_array(archive[point_key], archive[color_key] if color_key else None)


def _geometry_points(geometry: Any, mesh_samples: int) -> np.ndarray:
    """Points of a trimesh object: meshes are surface-sampled (seeded), point clouds taken as is."""
    import trimesh

    if isinstance(geometry, trimesh.Scene):
        parts = [_geometry_points(part, mesh_samples) for part in geometry.dump()]
        parts = [part for part in parts if len(part)]
        if not parts:
            return np.zeros((0, 3), dtype=np.float32)
        width = min(part.shape[1] for part in parts)  # drop colour unless every part has it
        return np.concatenate([part[:, :width] for part in parts])
    if isinstance(geometry, trimesh.PointCloud):
        colors = geometry.colors if len(geometry.colors) == len(geometry.vertices) else None
        return _from_array(geometry.vertices, colors)
    if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces):
        has_color = geometry.visual is not None and geometry.visual.kind is not None
        samples = trimesh.sample.sample_surface(geometry, mesh_samples, sample_color=has_color, seed=0)
        return _from_array(samples[0], samples[2] if has_color else None)
    if isinstance(geometry, trimesh.Trimesh):  # vertices only (e.g. an .obj of bare `v` lines)
        return _from_array(geometry.vertices)
    raise ValueError(f"unsupported geometry {type(geometry).__name__}")


def _read_mesh(path: Path, mesh_samples: int) -> np.ndarray:
    import trimesh

    return _geometry_points(trimesh.load(str(path), process=False), mesh_samples)


def _read_point_file(path: Path, mesh_samples: int) -> np.ndarray:
    """Dispatches on the extension; any parser failure becomes a `ValueError` naming the path."""
    suffix = path.suffix.lower()
    readers = {
        ".npy": lambda: _from_array(np.load(path, allow_pickle=False)),
        ".npz": lambda: _read_npz(path),
        **{ext: (lambda: _read_mesh(path, mesh_samples)) for ext in MESH_EXTENSIONS},
    }
    if suffix not in readers:
        raise ValueError(f"Cannot read point cloud {path}: unsupported extension {suffix!r}.")
    try:
        return readers[suffix]()
    except Exception as err:
        # numpy and trimesh raise many unrelated types (EOFError, KeyError, struct.error, ...) on bad files.
        raise ValueError(f"Cannot read point cloud {path}: {err}") from err


def _check_points(points: np.ndarray, source: str) -> np.ndarray:
    if points.shape[0] == 0:
        raise ValueError(f"Cannot read point cloud {source}: it holds no points.")
    if not np.isfinite(points).all():
        raise ValueError(f"Cannot read point cloud {source}: it holds NaN or infinite values.")
    return points


def load_point_cloud(item: Any, mesh_samples: int = _DEFAULT_MESH_SAMPLES) -> np.ndarray:
    """Reads one point cloud as float32 `[N, 3]` (xyz) or `[N, 6]` (xyz + RGB in [0, 1]).

    Accepts a path (`.npy`; `.npz` with key `points`/`xyz` (else the first array) and optional
    `rgb`/`colors`; `.ply`, `.obj`, `.glb`, ... via trimesh), an array / tensor, or a trimesh object.
    Meshes are surface-sampled with `mesh_samples` points (seed 0). Empty, NaN or wrongly shaped data
    raises `ValueError` naming the path.
    """
    if is_path(item):
        path = existing_file(item, "point cloud")
        return _check_points(_read_point_file(path, mesh_samples), str(path))
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    try:
        points = _from_array(item) if isinstance(item, np.ndarray) else _geometry_points(item, mesh_samples)
    except ValueError as err:
        raise ValueError(f"Cannot read point cloud from a {type(item).__name__}: {err}") from err
    return _check_points(points, f"from a {type(item).__name__}")


class PointCloudPreprocessor(ModalityPreprocessor):
    """Point clouds → `[n, num_points, 3]` (or `6` with `use_color`).

    Points are centred on their centroid, scaled to the unit sphere, then farthest-point sampled to
    `num_points` (clouds with fewer points are padded by cycling through them).

    Args:
        num_points: points per cloud. Default 1024.
        use_color: append RGB in [0, 1]; clouds without colour get mid-grey 0.5. Default False.
        mesh_samples: surface samples drawn from meshes before farthest-point sampling. Default 8192.
    """

    modality = "point_cloud"
    defaults = {"num_points": 1024, "use_color": False, "mesh_samples": _DEFAULT_MESH_SAMPLES}

    def _validate(self) -> None:
        owner = type(self).__name__
        self.num_points = positive_int(owner, "num_points", self.kwargs["num_points"])
        self.mesh_samples = positive_int(owner, "mesh_samples", self.kwargs["mesh_samples"])
        if not isinstance(self.kwargs["use_color"], bool):
            raise ValueError(f"{owner}: use_color must be a bool, got {self.kwargs['use_color']!r}.")
        self.use_color = self.kwargs["use_color"]

    def _features(self, item: Any) -> torch.Tensor:
        """One cloud as `[P, 3 or 6]`: loaded, on the unit sphere, with colour if asked."""
        points = load_point_cloud(item, mesh_samples=self.mesh_samples)
        xyz = normalize_points(points[:, :3])
        if self.use_color:
            rgb = points[:, 3:6] if points.shape[1] == 6 else np.full_like(xyz, 0.5)
            features = np.concatenate([xyz, rgb], axis=1)
        else:
            features = xyz
        return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))

    def _sample(self, clouds: list[torch.Tensor]) -> list[torch.Tensor]:
        """`num_points` per cloud: farthest-point sampling, batched over clouds of equal size (the
        sampling loop's per-step overhead dominates for one cloud), or cycling when too few."""
        out: list[torch.Tensor | None] = [None] * len(clouds)
        by_size: dict[int, list[int]] = {}
        for i, cloud in enumerate(clouds):
            if cloud.shape[0] >= self.num_points:
                by_size.setdefault(cloud.shape[0], []).append(i)
            else:
                out[i] = cloud[torch.arange(self.num_points) % cloud.shape[0]]
        for members in by_size.values():
            stacked = torch.stack([clouds[i] for i in members])
            index = farthest_point_sample(stacked[:, :, :3], self.num_points)
            for row, i in enumerate(members):
                out[i] = stacked[row, index[row]]
        return out

    def process_item(self, item: Any) -> torch.Tensor:
        return self._sample([self._features(item)])[0]

    def __call__(self, items: Any) -> torch.Tensor:
        if not isinstance(items, (list, tuple)) or len(items) == 0:
            return super().__call__(items)  # the base class words the error
        return torch.stack(self._sample([self._features(item) for item in items]))


register_modality(
    ModalitySpec(
        name="point_cloud",
        file_extensions=POINT_CLOUD_EXTENSIONS,
        load=load_point_cloud,
        preprocessor_cls=PointCloudPreprocessor,
        default_encoder_type="point_patch",
        caption_prompt="Describe the 3D object briefly.",
        example_file="chair.npy",
        generator=PointCloudGenerator,
    )
)
