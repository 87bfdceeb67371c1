"""A method carries its own facts: the README's method table and the stage cards read them from the
method's class (`summary`, `description`, `paper`), and plugin classes are named `...Plugin`."""

from __future__ import annotations

import re

import pytest
from helpers import REPO

from hf_mera.continual.plugins import PLUGIN_REGISTRY
from trainers.methods import METHODS


def readme_method_rows() -> dict[str, str]:
    """{method type: the "what stage i trains" cell} of the README's method table."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Methods", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\| [^|]*`\{type: (\w+)[^`]*\}` \| (.+) \| [^|]+ \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


@pytest.mark.parametrize("method_type", METHODS.names())
def test_every_method_carries_its_summary_description_and_the_readme_reads_it(method_type):
    cls = METHODS.get(method_type)
    assert cls.summary and cls.description, method_type
    assert readme_method_rows()[method_type] == cls.summary
    if cls.paper is not None:
        assert {"title", "id", "citation"} <= set(cls.paper) and cls.paper["citation"].startswith("@")


def test_the_readme_table_lists_exactly_the_registered_methods():
    assert sorted(readme_method_rows()) == METHODS.names()


def test_a_card_shows_its_method_s_description_and_cites_its_paper(tmp_path):
    import json

    from hf_mera.continual.curriculum import load_run_config
    from model_cards import MERA_CITATION, write_stage_card

    run = load_run_config("quickstart", {"order": ["image"], "methods": [{"name": "EWC", "type": "ewc"}]})
    folder = tmp_path / "ewc" / "stage-1-image"
    folder.mkdir(parents=True)
    info = {"method": "EWC", "method_type": "ewc", "stage": 1, "modality": "image", "order": ["image"]}
    info.update({"seen": ["image"], "scores": {"image": {"caption": 0.1, "qa": 0.5}}, "benchmark_hash": "x"})
    (folder / "stage.json").write_text(json.dumps(info))
    text = write_stage_card(folder, info, run).read_text(encoding="utf-8")
    ewc = METHODS.get("ewc")
    assert ewc.description in text
    assert MERA_CITATION in text and ewc.paper["citation"] in text


def test_plugin_classes_say_they_are_plugins():
    assert all(cls.__name__.endswith("Plugin") for _, cls in PLUGIN_REGISTRY.items())
    assert not any(cls.__name__.endswith("Plugin") for _, cls in METHODS.items())
