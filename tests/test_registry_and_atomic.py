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


def test_every_name_lookup_is_a_registry():
    from hf_mera.continual.plugins import PLUGIN_REGISTRY
    from hf_mera.data.adapters import ADAPTER_REGISTRY
    from hf_mera.evaluation import JUDGES, ExactMatchJudge, OpenAIJudge
    from hf_mera.modalities import ENCODER_REGISTRY, MODALITY_REGISTRY
    from hf_mera.models.anymodality_llava import CONNECTOR_REGISTRY
    from trainers.data_sources import DATA_SOURCES

    registries = [ADAPTER_REGISTRY, JUDGES, ENCODER_REGISTRY, MODALITY_REGISTRY]
    registries += [CONNECTOR_REGISTRY, DATA_SOURCES]
    assert all(isinstance(r, Registry) and len(r) for r in registries) and isinstance(
        PLUGIN_REGISTRY, Registry
    )
    assert JUDGES.get("exact_match") is ExactMatchJudge and JUDGES.get("openai") is OpenAIJudge
    with pytest.raises(
        ValueError, match=r"^evaluation\.judge: unknown judge 'gpt'; known: \['exact_match', 'openai'\]"
    ):
        JUDGES.get("gpt", where="evaluation.judge")


def test_a_new_connector_needs_one_registration_only():
    from torch import nn

    from hf_mera.models.anymodality_llava import CONNECTOR_REGISTRY, ModalityConfig, build_connector

    @CONNECTOR_REGISTRY.register("test_identity")
    class Identity(nn.Linear):
        pass

    try:
        assert (
            ModalityConfig(name="thermal", connector_type="test_identity").connector_type == "test_identity"
        )
        assert isinstance(build_connector("test_identity", 4, 4), Identity)
    finally:
        CONNECTOR_REGISTRY._entries.pop("test_identity")  # a test-only name must not leak into other tests
