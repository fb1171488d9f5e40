"""Plug-ins by entry-point group: backends and agents are a pip install away."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TypeVar

from orchestrator.errors import ConfigError

T = TypeVar("T")


def plugin_names(group: str) -> list[str]:
    return sorted(ep.name for ep in entry_points(group=group))


def load_plugin(group: str, name: str, base: Callable[..., T]) -> Callable[..., T]:
    """The class registered as ``name`` in ``group``, which must subclass ``base``.

    ``base`` is typed as a callable, not ``type[T]``, because the bases are abstract and
    mypy refuses abstract classes for ``type[T]`` (python/mypy#4717). What the class's
    constructor takes is the group's contract, which callers state where they call it.

    Raises:
        ConfigError: no such plug-in, or it is not a subclass of ``base``.
    """
    assert isinstance(base, type), "the base of a plug-in group is a class"
    matches = entry_points(group=group, name=name)
    if not matches:
        known = ", ".join(plugin_names(group)) or "none"
        raise ConfigError(f"unknown {base.__name__.lower()} {name!r}; available: {known}")
    plugin: Callable[..., T] = next(iter(matches)).load()
    if not _subclass(plugin, base):
        raise ConfigError(f"entry point {name!r} in {group} is not a {base.__name__} subclass")
    return plugin


def _subclass(candidate: object, base: type) -> bool:
    """A check that leaves the caller's static type of ``candidate`` as declared."""
    return isinstance(candidate, type) and issubclass(candidate, base)
