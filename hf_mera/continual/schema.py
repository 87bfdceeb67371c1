"""Dataclasses ⇄ plain dicts, strictly: unknown keys are errors that name their full path.

Used to load a run's YAML into validated dataclasses and to apply `--section.key value` overrides
from the command line (litgpt's `args.py` idea, without a new dependency).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, get_args, get_origin

import yaml


def from_dict(cls: type, data: dict[str, Any] | None, path: str = "") -> Any:
    """Build dataclass `cls` from `data`, recursing into nested dataclass fields.

    Raises ValueError naming the dotted path of an unknown key or a value of the wrong type.
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"{path or 'config'}: expected a mapping, got {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ValueError(
            f"Unknown config key(s) {[where + k for k in unknown]}; "
            f"valid keys{' under ' + path if path else ''}: {sorted(fields)}."
        )
    kwargs = {
        name: _coerce(hints[name], value, f"{path}.{name}" if path else name) for name, value in data.items()
    }
    try:
        return cls(**kwargs)
    except ValueError as err:
        # A section's own check (`__post_init__`) knows its fields, not where the section sits.
        message = str(err)
        if path and not message.startswith(path):
            names_a_field = message.split(":", 1)[0].split(".", 1)[0] in fields
            raise ValueError(f"{path}.{message}" if names_a_field else f"{path}: {message}") from err
        raise


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        errors = []
        for option in options:
            try:
                return _coerce(option, value, path)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if len(errors) == 1 else f"{path}: {value!r} matches none of {options}.")
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list, got {value!r}.")
        (item,) = get_args(hint)[:1] or (Any,)
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected a mapping, got {value!r}.")
        _, item = get_args(hint) or (str, Any)
        return {k: _coerce(item, v, f"{path}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{path}: expected true/false, got {value!r}.")
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if hint in (int, float, str):
        raise ValueError(f"{path}: expected {hint.__name__}, got {value!r}.")
    return value


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def parse_overrides(argv: list[str]) -> dict[str, Any]:
    """`["--training.realign.max_steps", "10", "--seed=3"]` → nested dict; values parsed as YAML scalars."""
    result: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise ValueError(f"Expected an override like --section.key value, got {arg!r}.")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv):
                raise ValueError(f"Override {arg!r} has no value.")
            value = argv[i + 1]
            i += 1
        i += 1
        node = result
        parts = key.replace("-", "_").split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return result


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


__all__ = ["from_dict", "to_dict", "parse_overrides", "deep_merge"]
