"""Modality registry and the preprocessor base class.

A modality (image, video, audio, point cloud, ...) is described by a `ModalitySpec`: the file extensions
it claims, a `load` function that reads one item into raw media, a `ModalityPreprocessor` subclass that
turns a list of items into one stacked tensor, the encoder type used when a config names none, and the
facts the rest of the library reads about it (how sentences name it, the caption instruction, the hub
pipeline tag, the file a card's snippet shows, the embedded benchmark's generator). Modules register
their spec on import, so adding a modality is one module and one registration: no table elsewhere
names modalities.
"""

from __future__ import annotations

import copy
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from hf_mera.registry import Registry

__all__ = [
    "MODALITY_REGISTRY",
    "ModalityPreprocessor",
    "ModalitySpec",
    "get_modality",
    "modality_for_path",
    "register_modality",
]


@dataclass(frozen=True)
class ModalitySpec:
    """Everything the library needs to know about one modality.

    Args:
        name: registry key, e.g. `"audio"`.
        file_extensions: lower-case extensions with the dot (`(".wav", ".flac")`), used to route uploads
            (the demo's accepted file types).
        load: reads one item (a path, or an in-memory object) into raw media; raises `ValueError` naming
            the path for unreadable, corrupt or mislabelled files (also the bad-data checks' file check).
        preprocessor_cls: `ModalityPreprocessor` subclass built as `preprocessor_cls(**preprocess)`.
        default_encoder_type: key of `ENCODER_REGISTRY` used when a modality config names none.
        spoken_name: how sentences name it ("point cloud"); default: `name` with spaces for "_".
        caption_prompt: the user turn of a captioning example read from files (the paper-dataset
            adapters); default: "Describe the <spoken name> briefly.".
        pipeline_tag: the hub's pipeline tag of a model that reads this modality alone beside text
            (`"image-text-to-text"`); None: the card says "any-to-any".
        example_file: the file name a model card's loading snippet shows; default `example<first ext>`.
        generator: the embedded benchmark's generator of this modality (an
            `hf_mera.data.embedded.EmbeddedModality` subclass), or None when it has none.
    """

    name: str
    file_extensions: tuple[str, ...]
    load: Callable[[Any], Any]
    preprocessor_cls: type[ModalityPreprocessor]
    default_encoder_type: str
    spoken_name: str = ""
    caption_prompt: str = ""
    pipeline_tag: str | None = None
    example_file: str = ""
    generator: type | None = None

    def __post_init__(self) -> None:
        # Derived defaults (the dataclass is frozen, hence object.__setattr__).
        spoken = self.spoken_name or self.name.replace("_", " ")
        object.__setattr__(self, "spoken_name", spoken)
        if not self.caption_prompt:
            object.__setattr__(self, "caption_prompt", f"Describe the {spoken} briefly.")
        if not self.example_file:
            object.__setattr__(self, "example_file", f"example{self.file_extensions[0]}")


MODALITY_REGISTRY: Registry[ModalitySpec] = Registry("modality")


def register_modality(spec: ModalitySpec) -> ModalitySpec:
    """Adds `spec` to `MODALITY_REGISTRY` under `spec.name`; a second spec under that name is a `ValueError`.

    Registration order is the canonical modality order (the embedded benchmark's, the demo's): the
    package registers the paper's four in the paper's order (image, video, audio, point cloud)."""
    MODALITY_REGISTRY.register(spec.name, spec)
    if spec.generator is not None:
        spec.generator.name = spec.name  # the generator writes files and ids under its modality's name
    return spec


def get_modality(name: str, where: str | None = None) -> ModalitySpec:
    """The registered spec for `name`; an unknown one raises `ValueError` listing the known modalities
    (prefixed by `where`, the config field that held `name`, when given)."""
    return MODALITY_REGISTRY.get(name, where=where)


def modality_for_path(path: str | Path) -> str:
    """Name of the registered modality whose `file_extensions` include the extension of `path`."""
    suffix = Path(path).suffix.lower()
    for name, spec in MODALITY_REGISTRY.items():
        if suffix in spec.file_extensions:
            return name
    raise ValueError(f"No registered modality reads {suffix or 'extension-less'} files: {path}")


def is_path(item: Any) -> bool:
    """Paths are given as `str` or `os.PathLike`; everything else is an in-memory object."""
    return isinstance(item, (str, Path))


def existing_file(item: str | Path, modality: str) -> Path:
    """`item` as a `Path`, or a `ValueError` naming it when it is not a readable file."""
    path = Path(item)
    if not path.is_file():
        raise ValueError(f"Cannot read {modality} {path}: no such file.")
    if path.stat().st_size == 0:
        raise ValueError(f"Cannot read {modality} {path}: the file is empty.")
    return path


def _json_safe(value: Any) -> Any:
    """Tuples become lists so that `to_dict()` round-trips through JSON unchanged."""
    return json.loads(json.dumps(value))


class ModalityPreprocessor(ABC):
    """Turns a list of items of one modality into a stacked float tensor `[n_items, ...]`.

    Subclasses declare their keyword arguments and defaults in `defaults`, check them in `_validate`, and
    implement `process_item`. Every item yields a tensor of the same shape for a given set of kwargs, so a
    batch always stacks.
    """

    modality: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} got unknown argument(s) {unknown}; known: {sorted(self.defaults)}."
            )
        merged = {**copy.deepcopy(self.defaults), **kwargs}
        try:
            self.kwargs: dict[str, Any] = _json_safe(merged)
        except TypeError as err:
            raise ValueError(f"{type(self).__name__} arguments must be JSON-serialisable: {err}") from err
        self._validate()

    def _validate(self) -> None:  # noqa: B027  (an optional hook, not abstract)
        """Checks `self.kwargs`; raises `ValueError` naming the offending field."""

    @staticmethod
    def kwargs_from_hub(processor: Any) -> dict[str, Any]:
        """Defaults implied by a hub encoder's own processor (`AutoImageProcessor` /
        `AutoFeatureExtractor`); none unless a modality knows how to read it."""
        return {}

    @abstractmethod
    def process_item(self, item: Any) -> torch.Tensor:
        """Loads and preprocesses one item (a path or an in-memory object)."""

    def __call__(self, items: Sequence[Any]) -> torch.Tensor:
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{type(self).__name__} expects a list of items, got {type(items).__name__}.")
        if len(items) == 0:
            raise ValueError(f"{type(self).__name__} got an empty list of {self.modality} items.")
        return torch.stack([self.process_item(item) for item in items])

    def to_dict(self) -> dict[str, Any]:
        """All kwargs, defaults included, as a JSON-safe dict (`type(self)(**to_dict())` rebuilds it)."""
        return copy.deepcopy(self.kwargs)

    def fingerprint(self) -> str:
        """Stable sha256 hex digest of the class name and kwargs (keys the encoder-feature cache)."""
        payload = type(self).__name__ + json.dumps(self.kwargs, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kwargs})"


def positive_int(owner: str, field: str, value: Any) -> int:
    """`value` if it is an int > 0, else a `ValueError` naming `owner.field`."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{owner}: {field} must be a positive int, got {value!r}.")
    return value


def positive_number(owner: str, field: str, value: Any) -> float:
    """`value` as a float if it is a number > 0, else a `ValueError` naming `owner.field`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{owner}: {field} must be a positive number, got {value!r}.")
    return float(value)


def size_pair(owner: str, field: str, value: Any) -> tuple[int, int]:
    """An int `s` or a pair `(h, w)` as `(h, w)`; anything else is a `ValueError` naming the field."""
    pair = [value, value] if isinstance(value, int) else value
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise ValueError(f"{owner}: {field} must be an int or a pair (height, width), got {value!r}.")
    return positive_int(owner, field, pair[0]), positive_int(owner, field, pair[1])


def channel_triple(owner: str, field: str, value: Any, *, positive: bool = False) -> tuple[float, ...]:
    """Three per-channel numbers (RGB mean or std); `positive` forbids zero/negative entries (a std)."""
    ok = isinstance(value, (list, tuple)) and len(value) == 3
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or (positive and min(value) <= 0):
        raise ValueError(
            f"{owner}: {field} must be 3 {'positive ' if positive else ''}numbers, got {value!r}."
        )
    return tuple(float(v) for v in value)
