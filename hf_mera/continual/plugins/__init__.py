"""Continual-learning methods as plugins: the hooks and registry in `base`, one file per method.

A method lives in `hf_mera/continual/plugins/<name>.py`, registers itself with `@register_plugin(name)`
and is imported below so that importing this package registers it.
"""

from .base import (
    PLUGIN_REGISTRY,
    ContinualPlugin,
    StageContext,
    build_plugin,
    load_plugin_states,
    plugin_state_file,
    register_plugin,
    save_plugin_states,
    total_penalty,
)

__all__ = [
    "ContinualPlugin",
    "PLUGIN_REGISTRY",
    "StageContext",
    "build_plugin",
    "load_plugin_states",
    "plugin_state_file",
    "register_plugin",
    "save_plugin_states",
    "total_penalty",
]

# Imported for their registration.
from . import ewc, replay  # noqa: E402, F401
