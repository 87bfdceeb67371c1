"""Continual-learning methods a curriculum names by `type`, one file each, registered by decorator.

A method is a `MergeAndRealignTrainer` subclass: it sets class attributes (`merge_method`,
`realign`, `reference`) or overrides a transition or the stage generator. Adding one::

    @register_method("my_method")
    class MyMethod(MergeAndRealignTrainer):
        merge_method = "none"
"""

from __future__ import annotations

from hf_mera.continual.curriculum import MethodConfig
from hf_mera.registry import Registry

from ..merge_and_realign import MergeAndRealignTrainer

METHODS: Registry[type[MergeAndRealignTrainer]] = Registry("method", base=MergeAndRealignTrainer)
register_method = METHODS.register


def build_method(workspace, method: MethodConfig) -> MergeAndRealignTrainer:
    """The trainer of the curriculum entry `method` (its `type` names a registered method)."""
    return METHODS.get(method.type, where=f"methods: {method.name!r}: type")(workspace, method)


# Imported for their registration.
from . import eproj, ewc, experts, fine_tuning, mera, pathweave, replay  # noqa: E402, F401

__all__ = ["METHODS", "build_method", "register_method"]
