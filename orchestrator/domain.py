"""Shared vocabulary: attempt states, outcomes and the records the store keeps."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

Progress = Callable[[str], None]
"""Where one-line progress messages for the user go (the CLI prints them)."""


class AttemptState(enum.StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    ACTING = "acting"
    SCORING = "scoring"  # the submission is stored; only scoring remains
    FINISHED = "finished"


ACTIVE_STATES = frozenset(s for s in AttemptState if s is not AttemptState.FINISHED)


class Outcome(enum.StrEnum):
    """How a finished attempt ended; the three failure families never mix."""

    SCORED = "scored"  # the submission ran and has a score (it may still have missed the target)
    SUBMISSION_FAILED = "submission_failed"  # rejected or every run failed through its own fault
    AGENT_FAILED = "agent_failed"  # no usable submission
    INFRA_FAILED = "infra_failed"  # our side broke; retry, charge nobody
    CANCELLED = "cancelled"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Attempt(_Frozen):
    id: str
    task_id: str
    agent: str
    backend: str
    state: AttemptState
    outcome: Outcome | None
    reason: str | None
    version: int
    owner: str | None
    lease_expires_at: float | None
    config: dict[str, Any]
    sandbox: dict[str, Any] | None
    created_at: float
    updated_at: float


class ToolCall(_Frozen):
    seq: int
    op: str
    request: dict[str, Any]
    status: int
    """HTTP status the agent got."""
    error: str | None = None
    duration_ms: float
    created_at: float


class ExperimentRecord(_Frozen):
    number: int
    workspace_version: int
    status: str
    result: dict[str, Any]
    created_at: float


class WorkspaceVersion(_Frozen):
    version: int
    parent: int | None
    tree: dict[str, str]
    """relative path -> sha256"""
    created_at: float
