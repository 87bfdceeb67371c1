"""The one registry pattern and the one atomic-publish helper that every module uses."""

from __future__ import annotations

import json

import pytest

from hf_mera.atomic import atomic_directory, atomic_file, atomic_write_json, atomic_write_text
from hf_mera.registry import Registry


class Base:
    pass


def test_registry_registers_once_and_lists_known_names_on_a_typo():
    registry = Registry("widget", base=Base)

    @registry.register("a")
    class A(Base):
        pass

    assert registry.get("a") is A and "a" in registry and registry.names() == ["a"]
    with pytest.raises(ValueError, match=r"Widget 'a' is already registered \(by .*A\)"):
        registry.register("a", type("A2", (Base,), {}))
    with pytest.raises(ValueError, match=r"^model.x.widget: unknown widget 'b'; known: \['a'\]\.$"):
        registry.get("b", where="model.x.widget")
    with pytest.raises(ValueError, match="is not a Base subclass"):
        registry.register("c", int)
    assert registry.names() == ["a"]  # the failed registrations left nothing behind


def test_registry_on_register_hook_names_the_class():
    registry = Registry("plugin", on_register=lambda name, cls: setattr(cls, "name", name))
    cls = registry.register("ewc", type("EWC", (), {}))
    assert cls.name == "ewc"


def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "result.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_text(target, json.dumps({"b": 2}))
    assert json.loads(target.read_text()) == {"b": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]


def test_atomic_directory_keeps_the_old_folder_when_building_fails(tmp_path):
    target = tmp_path / "stage-1-image"
    with atomic_directory(target) as tmp:
        (tmp / "stage.json").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "stage.json").write_text("half")
            raise RuntimeError("crash mid-write")
    assert (target / "stage.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage-1-image"]
    with atomic_directory(target) as tmp:
        (tmp / "stage.json").write_text("new")
    assert (target / "stage.json").read_text() == "new"


def test_atomic_file_keeps_the_suffix_and_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "features.safetensors"
    with atomic_file(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".safetensors" and tmp != target
        tmp.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.safetensors"]
