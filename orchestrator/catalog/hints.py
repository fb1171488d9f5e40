"""Hint packs: what an agent may be told about the change from record N to N+1.

A pack is a folder ``<hints_root>/<track>/<task id>/`` holding ``pack.toml`` (provenance
and license) and at least one of ``level_1.md`` (pseudocode of the change),
``level_2.md`` (a prose description), ``level_3.md`` (a mini-paper), plus optional
background files under ``knowledge/``. Levels are cumulative for the agent only by
choice of the caller: ``text(level)`` returns exactly one level.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.errors import ManifestError, NotFound, validation_problems

LEVELS = (1, 2, 3)
LEVEL_NAMES = {1: "pseudocode", 2: "description", 3: "mini-paper"}
PACK_FILE = "pack.toml"


class PackManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(1, alias="schema")
    task: str
    """Task id the pack belongs to, e.g. ``nanogpt-r3-r4``; must match the folder name."""
    provenance: str
    """Who wrote the text and from which public facts."""
    license: str
    """SPDX identifier of the text's license."""
    upstream: dict[str, str] = {}
    """Imported packs: our file (relative to the pack) -> its name in the upstream layout."""


def _level_file(level: int) -> str:
    return f"level_{level}.md"


@dataclass(frozen=True)
class HintPack:
    root: Path
    manifest: PackManifest
    levels: tuple[int, ...]
    knowledge: tuple[Path, ...]

    @property
    def task_id(self) -> str:
        return self.manifest.task

    def text(self, level: int) -> str:
        """Raises: NotFound when the pack has no such level."""
        if level not in self.levels:
            have = ", ".join(map(str, self.levels))
            raise NotFound(f"hint pack {self.task_id} has no level {level} (it has {have})")
        return (self.root / _level_file(level)).read_text(encoding="utf-8")


def load_pack(root: Path) -> HintPack:
    """Raises: ManifestError when pack.toml is missing or malformed or the pack has no level."""
    manifest_path = root / PACK_FILE
    try:
        raw = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
        manifest = PackManifest.model_validate(raw)
    except FileNotFoundError:
        raise ManifestError(f"{root}: not a hint pack (no {PACK_FILE})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{manifest_path}: not valid TOML: {e}") from e
    except ValidationError as e:
        raise ManifestError(f"{manifest_path}: invalid hint pack: {validation_problems(e)}") from e
    if manifest.schema_version != 1:
        raise ManifestError(f"{manifest_path}: unsupported hint pack schema {manifest.schema_version}")
    if manifest.task != root.name:
        raise ManifestError(f"{manifest_path}: task {manifest.task!r} differs from its folder name")
    levels = tuple(level for level in LEVELS if (root / _level_file(level)).is_file())
    if not levels:
        raise ManifestError(f"{root}: hint pack has none of {', '.join(map(_level_file, LEVELS))}")
    knowledge_dir = root / "knowledge"
    knowledge = (
        tuple(sorted(p for p in knowledge_dir.rglob("*") if p.is_file())) if knowledge_dir.is_dir() else ()
    )
    return HintPack(root=root, manifest=manifest, levels=levels, knowledge=knowledge)


def find_pack(hints_root: Path, track: str, task_id: str) -> HintPack | None:
    """The pack for a task, or None when the team wrote none.

    Raises: ManifestError when a pack exists but is malformed.
    """
    root = hints_root / track / task_id
    return load_pack(root) if root.is_dir() else None
