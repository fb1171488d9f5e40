"""What the scorer harness is asked to run, and what it measures.

The orchestrator builds a ScoringPlan; a backend ships it with the files into a
fresh scorer environment and runs the harness there; the harness answers with one
RunMeasurement per run.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Role(enum.StrEnum):
    BASELINE = "baseline"  # record N
    REFERENCE = "reference"  # record N+1
    SUBMISSION = "submission"


class PlannedRun(_Model):
    label: str
    """Unique within the plan, e.g. ``r0-baseline`` or ``r0-sub-<attempt id>``."""
    role: Role
    attempt_id: str | None = None
    repeat: int
    seed: int
    files: str
    """Key into ``ScoringPlan.file_sets``."""
    argv: list[str]
    """Relative to the run folder; ``{python}`` is replaced by the harness's interpreter."""
    env: dict[str, str]
    """Launch env of the record plus the scorer's data paths (held-out validation)."""
    timeout_s: float


class ScoringPlan(_Model):
    session_id: str
    task_id: str
    target_val_loss: float
    max_output_bytes: int
    memory_bytes: int | None
    file_sets: dict[str, dict[str, str]]
    """Name -> (relative path -> UTF-8 text): the pristine records and each submission overlay."""
    runs: list[PlannedRun]
    gpus: int = 0
    """GPUs the scorer environment needs (the most any run launches ranks on)."""


class Flag(enum.StrEnum):
    DID_NOT_REACH_TARGET = "did_not_reach_target"
    CRASHED = "crashed"
    TIMED_OUT = "timed_out"
    OUTPUT_LIMIT = "output_limit"
    MEMORY_LIMIT = "memory_limit"
    NO_PROGRESS = "no_progress"
    """Never printed a progress line."""
    REPORTED_TIME_EXCEEDS_WALL = "reported_time_exceeds_wall"
    """The script claimed more training time than had passed on the scorer's clock."""
    INVALID_SUBMISSION = "invalid_submission"


class RunMeasurement(_Model):
    label: str
    role: Role
    attempt_id: str | None = None
    repeat: int
    seed: int
    reason: str
    """How the process ended: stopped (target reached), exited, timed_out, ..."""
    returncode: int | None = None
    reached_target: bool
    seconds_to_target: float | None = None
    """Scorer's clock: launch to the arrival of the first line at or below the target."""
    reported_train_ms: float | None = None
    """train_time the script printed on that line (not trusted on its own)."""
    val_loss: float | None = None
    """Loss on the target line, else the last reported loss."""
    step: int | None = None
    first_progress_s: float | None = None
    """Scorer's clock: launch to the first progress line (the start-up the script does not time)."""
    wall_s: float
    output_bytes: int
    flags: list[Flag] = Field(default_factory=list)
    log_tail: str = ""


class HarnessResult(_Model):
    fingerprint: dict[str, Any]
    measurements: list[RunMeasurement]


class HarnessEvent(_Model):
    """One JSON line on the harness's stdout, for live progress."""

    event: Literal["run_started", "progress", "run_finished"]
    label: str
    index: int
    total: int
    step: int | None = None
    total_steps: int | None = None
    val_loss: float | None = None
    t: float | None = None
    measurement: RunMeasurement | None = None
