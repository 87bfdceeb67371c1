"""Dataclasses ⇄ plain dicts, strictly: unknown keys are errors that name their full path.

Used to load a run's YAML into validated dataclasses and to apply `--section.key value` overrides
from the command line (litgpt's `args.py` idea, without a new dependency).

Besides its type, a field's `metadata` may declare what values it allows, checked here for every
class alike (one declarative place instead of an `if` per field)::

    lr: float = field(default=1e-3, metadata={"help": "...", "gt": 0})
    ratio: float = field(default=0.1, metadata={"help": "...", "ge": 0, "le": 1})
    judge: str = field(default="exact_match", metadata={"help": "...", "choices": "judge"})

`ge` / `gt` / `le` / `lt` bound a number; `choices` names a kind of registered name, looked up in
the `names` table given to `from_dict` (kind → zero-argument function returning the registry or
the allowed names). A kind the table does not hold is left to whoever holds it (`check_names`: the
trainers check method types, backbone types and data sources, which the library cannot import).
Every error is a `ValueError` naming the dotted field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any, get_args, get_origin

import yaml

NameTable = Mapping[str, Callable[[], Collection[str]]]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading floats as YAML 1.2 does: `1e-3` and `2E-5` are numbers, not
    strings (YAML 1.1 wants a dot, so `--training.realign.learning_rate 1e-3` used to be refused)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` with YAML 1.2 floats (`1e-3`); used for config files and overrides alike."""
    return yaml.load(text, Loader=_Loader)


def from_dict(cls: type, data: dict[str, Any] | None, path: str = "", names: NameTable | None = None) -> Any:
    """Build dataclass `cls` from `data`, recursing into nested dataclass fields.

    Raises ValueError naming the dotted path of an unknown key, a value of the wrong type, out of its
    field's range or not among its `choices` (the kinds `names` holds).
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(
            f"{path or 'config'}: expected a mapping of keys to values, got {type(data).__name__} {_short(data)}."
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ValueError(
            f"Unknown config key(s) {[where + k for k in unknown]}; "
            f"valid keys{' under ' + path if path else ''}: {sorted(fields)}."
        )
    kwargs = {}
    for name, value in data.items():
        where = f"{path}.{name}" if path else name
        kwargs[name] = _coerce(hints[name], value, where, names)
        check_field(fields[name], kwargs[name], where, names or {})
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        # A section's own check (`__post_init__`) knows its fields, not where the section sits.
        message = str(err)
        if path and not message.startswith(path):
            names_a_field = re.split(r"[:.\[ ]", message, maxsplit=1)[0] in fields
            raise ValueError(f"{path}.{message}" if names_a_field else f"{path}: {message}") from err
        if isinstance(err, TypeError):
            raise ValueError(message) from err
        raise


_BOUNDS = {"ge": (">=", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b)}
_BOUNDS |= {"le": ("<=", lambda v, b: v <= b), "lt": ("<", lambda v, b: v < b)}


def allowed_range(f: dataclasses.Field) -> str | None:
    """The field's bounds as a user reads them (`'>= 0 and <= 1'`), or None when it has none."""
    parts = [f"{op} {f.metadata[key]}" for key, (op, _) in _BOUNDS.items() if key in f.metadata]
    return " and ".join(parts) or None


def check_field(f: dataclasses.Field, value: Any, path: str, names: NameTable) -> None:
    """The checks `f.metadata` declares, on an already type-checked `value` (None always passes:
    a field that allows None says so in its type)."""
    if value is None:
        return
    for key, (_op, ok) in _BOUNDS.items():
        if key in f.metadata and isinstance(value, (int, float)) and not ok(value, f.metadata[key]):
            raise ValueError(f"{path}: got {value!r}; allowed: {allowed_range(f)}.")
    kind = f.metadata.get("choices")
    if kind is not None and kind in names and isinstance(value, str):
        check_name(kind, names[kind](), value, path)


def check_name(kind: str, known: Collection[str], value: str, path: str) -> None:
    """`value` must be one of `known` (a `Registry` or names): else a ValueError naming `path`."""
    if value not in known:
        raise ValueError(f"{path}: unknown {kind} {value!r}; known: {sorted(known)}.")


def check_names(obj: Any, names: NameTable, path: str = "") -> None:
    """Check every `choices` field of dataclass `obj` (recursively) whose kind `names` holds: the
    second pass for names a library module cannot check (see the module docstring)."""
    for f in dataclasses.fields(obj):
        value, where = getattr(obj, f.name), f"{path}.{f.name}" if path else f.name
        kind = f.metadata.get("choices")
        if kind in names and isinstance(value, str):
            check_name(kind, names[kind](), value, where)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if dataclasses.is_dataclass(item):
                check_names(item, names, f"{where}[{i}]" if isinstance(value, list) else where)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _coerce(hint: Any, value: Any, path: str, names: NameTable | None = None) -> Any:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        errors = []
        for option in options:
            try:
                return _coerce(option, value, path, names)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if len(errors) == 1 else f"{path}: {value!r} matches none of {options}.")
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path, names)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list, got {value!r}.")
        (item,) = get_args(hint)[:1] or (Any,)
        return [_coerce(item, v, f"{path}[{i}]", names) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected a mapping, got {value!r}.")
        _, item = get_args(hint) or (str, Any)
        return {k: _coerce(item, v, f"{path}.{k}", names) for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{path}: expected true/false, got {value!r}.")
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{path}: expected a finite number, got {value!r}.")
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
        try:
            node[parts[-1]] = load_yaml(value)
        except yaml.YAMLError as err:
            raise ValueError(f"Override {arg!r}: {value!r} is not a YAML value: {err}") from err
    return result


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


__all__ = [
    "from_dict",
    "to_dict",
    "parse_overrides",
    "deep_merge",
    "load_yaml",
    "check_field",
    "check_name",
    "check_names",
    "allowed_range",
]
