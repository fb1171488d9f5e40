"""Shared vocabulary: attempt states, outcomes and the records the store keeps."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.settings import AgentBudget

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


class AttemptConfig(_Frozen):
    """An attempt's settings, fixed when it is created; stored with it as JSON (the fields set)."""

    model: str | None = None
    """The model an LLM agent uses (a name in the model catalog)."""
    params: dict[str, Any] = {}
    """The agent's own parameters (its ``parse_params`` checks them)."""
    hints: int | None = None
    """The hint level asked for; None: no hints."""
    hint_files: list[str] = []
    knowledge_files: list[str] = []
    budget: AgentBudget = Field(default_factory=AgentBudget)
    """The agent's limits on model use."""
    repeats: int | None = None
    """Scorer repeats R; None: the scorer settings'."""
    batch: str | None = None
    """The batch the attempt belongs to (orchestrator/batch.py), with its cell and replica."""
    cell: str | None = None
    seed: int | None = None
    """The batch's replica number of the cell."""
    source: str | None = None
    """Where a submission scored from disk came from (``speedrun score``)."""

    def to_json(self) -> dict[str, Any]:
        """What the store keeps: the fields given, so rows read back as they were written."""
        return self.model_dump(mode="json", include=self.model_fields_set)


SandboxHandle = dict[str, Any]
"""A backend's JSON-able facts about an attempt's running sandbox (``Sandbox.handle``)."""


class ScoringHandle(_Frozen):
    """What an attempt being scored holds instead: its scoring session (resources carry its id)."""

    scoring_session: str


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
    config: AttemptConfig
    sandbox: Annotated[ScoringHandle | SandboxHandle | None, Field(union_mode="left_to_right")]
    """What a successor reclaims when this attempt's orchestrator dies."""
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
