"""Process settings: one BaseSettings, env prefix SPEEDRUN_, nested delimiter "__".

Precedence, highest first (declared in ``settings_customise_sources``):
  1. keyword arguments given in code (the CLI passes its flags this way)
  2. environment variables, e.g. SPEEDRUN_SCORER__REPEATS=3
  3. the TOML config file named by SPEEDRUN_CONFIG (default ./speedrun.toml if present)
  4. the defaults below
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_PACKAGE_DIR = Path(__file__).resolve().parent


def _default_records_dir() -> Path:
    """records/ beside the package in a source checkout, else the copy bundled in the wheel."""
    checkout = _PACKAGE_DIR.parent / "records"
    return checkout if checkout.is_dir() else _PACKAGE_DIR / "_bundled" / "records"


def _default_hints_dir() -> Path:
    checkout = _PACKAGE_DIR.parent / "hints"
    return checkout if checkout.is_dir() else _PACKAGE_DIR / "_bundled" / "hints"


def _default_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "speedrun"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SandboxLimits(_Section):
    max_experiments: int = Field(default=20, ge=0)
    """Experiments an agent may run in one attempt."""
    experiment_timeout_s: float = Field(default=600.0, gt=0)
    """Wall-time cap of one experiment; the process group is killed after it."""
    attempt_timeout_s: float = Field(default=3600.0, gt=0)
    """Wall-time cap of the whole agent phase of an attempt."""
    max_file_bytes: int = Field(default=512 * 1024, gt=0)
    """Largest file the tool API will write or return."""
    max_output_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """Output an experiment may print before it is killed as flooding."""
    log_tail_bytes: int = Field(default=16 * 1024, gt=0)
    """How much of an experiment's log a tool call returns."""
    memory_bytes: int = Field(default=8 * 1024**3, gt=0)
    """Resident memory of an experiment's whole process group."""


class ScorerSettings(_Section):
    repeats: int = Field(default=1, ge=1)
    """R: runs of each of baseline, reference and submission."""
    timeout_factor: float = Field(default=3.0, gt=1)
    """A run is killed after this many times the record's published time (plus start-up)."""
    startup_allowance_s: float = Field(default=60.0, ge=0)
    """Untimed allowance for interpreter, torchrun and data start-up inside the time cap."""
    max_output_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    max_submission_bytes: int = Field(default=1024 * 1024, gt=0)
    """Total size of the submitted files."""
    memory_bytes: int = Field(default=8 * 1024**3, gt=0)


class GpuSettings(_Section):
    devices: list[int] | None = None
    """GPU indices sandboxes and scorers may use; None: every GPU of the host
    (CUDA_VISIBLE_DEVICES if the orchestrator has one, else nvidia-smi's); []: none."""
    acquire_timeout_s: float = Field(default=3600.0, ge=0)
    """How long a sandbox or scoring session waits for free GPUs before failing (infrastructure)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SPEEDRUN_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(default_factory=_default_home)
    """Where the store, data, workspaces and caches live."""
    database_url: str | None = None
    """SQLAlchemy URL; default: SQLite at <home>/speedrun.db."""
    records_dir: Path = Field(default_factory=_default_records_dir)
    hints_dir: Path = Field(default_factory=_default_hints_dir)
    """The team's hint packs (layout: orchestrator/catalog/hints.py)."""
    data_root: Path | None = None
    """Where track data lives; default <home>/data. Shareable between homes."""
    backend: str = "local"
    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    lease_ttl_s: float = Field(default=30.0, gt=0)
    """An attempt whose owner has not renewed its lease for this long is orphaned."""
    sandbox: SandboxLimits = SandboxLimits()
    scorer: ScorerSettings = ScorerSettings()
    gpus: GpuSettings = GpuSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("SPEEDRUN_CONFIG", "speedrun.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file),
        )

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'speedrun.db'}"

    @property
    def data_dir(self) -> Path:
        return self.data_root or self.home / "data"

    @property
    def workspaces_dir(self) -> Path:
        return self.home / "workspaces"

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def scoring_dir(self) -> Path:
        return self.home / "scoring"
