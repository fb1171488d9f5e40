"""Backends: where sandboxes and scorer jobs run. Found by name through a registry.

Built-in backends and third-party ones register in the ``speedrun.backends``
entry-point group; a backend class takes the process Settings.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from orchestrator.backends.base import Backend, Sandbox, SandboxSpec
from orchestrator.errors import ConfigError
from orchestrator.settings import Settings

ENTRY_POINT_GROUP = "speedrun.backends"


def available_backends() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def create_backend(name: str, settings: Settings) -> Backend:
    """Raises: ConfigError for an unknown backend name."""
    matches = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not matches:
        raise ConfigError(f"unknown backend {name!r}; available: {', '.join(available_backends()) or 'none'}")
    cls = next(iter(matches)).load()
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ConfigError(f"entry point {name!r} does not name a Backend subclass")
    return cls(settings)


__all__ = ["Backend", "Sandbox", "SandboxSpec", "available_backends", "create_backend"]
