"""images/images.toml (the image targets) and images/lock.json (their pinned digests)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.errors import ConfigError, NotFound

LOCK_FILE = "lock.json"


class ImageTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    """The local repository name; records name it in [environment] image."""
    description: str = ""
    builder: Literal["host-env", "dockerfile"]
    dockerfile: str
    """Relative to the repository root."""
    base: str | None = None
    env_dockerfile: str | None = None
    target: str | None = None
    """Environment group of a multi-group Dockerfile (build-arg TORCH_GROUP)."""
    context: list[str] = ["orchestrator"]
    """host-env: the repository folders copied onto the environment layer. Sandbox and scorer
    images hold the orchestrator package only: never the catalog with later records."""
    metadata: bool = False
    """host-env: also the project's installed metadata (its entry points name the backends
    and agents), for images that run the orchestrator itself."""


class LockEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    digest: str
    """Content digest of the image (its id: sha256 of the config naming every layer)."""
    repo_digest: str | None = None
    """Registry digest, once pushed (``name@sha256:...``)."""
    records: list[str] = []


class Lock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    images: dict[str, LockEntry] = {}


def load_targets(images_dir: Path) -> dict[str, ImageTarget]:
    """Raises: ConfigError for a malformed images.toml."""
    path = images_dir / "images.toml"
    try:
        raw = tomllib.loads(path.read_text())
        return {name: ImageTarget(name=name, **spec) for name, spec in raw.items()}
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no image catalog here (set SPEEDRUN_IMAGES_DIR)") from e
    except (tomllib.TOMLDecodeError, ValidationError, TypeError) as e:
        raise ConfigError(f"{path}: {e}") from e


def pick(targets: dict[str, ImageTarget], names: list[str]) -> list[ImageTarget]:
    """Raises: NotFound for an unknown image name."""
    unknown = [n for n in names if n not in targets]
    if unknown:
        raise NotFound(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(sorted(targets))}")
    return [targets[n] for n in names] if names else list(targets.values())


def read_lock(images_dir: Path) -> Lock:
    path = images_dir / LOCK_FILE
    if not path.exists():
        return Lock()
    try:
        return Lock.model_validate_json(path.read_text())
    except ValidationError as e:
        raise ConfigError(f"{path}: {e}") from e


def write_lock(images_dir: Path, lock: Lock) -> Path:
    path = images_dir / LOCK_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(lock.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
