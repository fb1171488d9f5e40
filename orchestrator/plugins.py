"""Plug-ins by entry-point group: backends and agents are a pip install away."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TypeVar

from orchestrator.errors import ConfigError

T = TypeVar("T")


def plugin_names(group: str) -> list[str]:
    return sorted(ep.name for ep in entry_points(group=group))


def load_plugin(group: str, name: str, base: type[T]) -> type[T]:
    """The class registered as ``name`` in ``group``.

    Raises:
        ConfigError: no such plug-in, or it is not a subclass of ``base``.
    """
    matches = entry_points(group=group, name=name)
    if not matches:
        known = ", ".join(plugin_names(group)) or "none"
        raise ConfigError(f"unknown {base.__name__.lower()} {name!r}; available: {known}")
    cls = next(iter(matches)).load()
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"entry point {name!r} in {group} is not a {base.__name__} subclass")
    return cls
