"""Backends: where sandboxes and scorer jobs run. Found by name through a registry.

Built-in backends and third-party ones register in the ``speedrun.backends``
entry-point group; a backend class takes the process Settings.
"""

from __future__ import annotations

from orchestrator.backends.base import Backend, Sandbox, SandboxSpec
from orchestrator.plugins import load_plugin, plugin_names
from orchestrator.settings import Settings

ENTRY_POINT_GROUP = "speedrun.backends"


def available_backends() -> list[str]:
    return plugin_names(ENTRY_POINT_GROUP)


def create_backend(name: str, settings: Settings) -> Backend:
    """Raises: ConfigError for an unknown backend name."""
    return load_plugin(ENTRY_POINT_GROUP, name, Backend)(settings)


__all__ = ["Backend", "Sandbox", "SandboxSpec", "available_backends", "create_backend"]
