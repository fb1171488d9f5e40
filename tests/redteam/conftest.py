"""Scoring a submission the way the scorer does after its static checks, without them.

The red team's runtime cheats pass (or skip) the static rules on purpose: these
helpers hand them straight to the harness, so the second line of defence (the
scorer's own observations and the kernel confinement) is what is under test.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping

import pytest

from orchestrator.backends.local import LocalBackend
from orchestrator.catalog.catalog import Catalog, Task
from orchestrator.catalog.data import ensure_track_data
from orchestrator.scorer.plan import HarnessResult
from orchestrator.scorer.score import Score
from orchestrator.scorer.session import build_plan, run_session
from orchestrator.settings import Settings

ScoreFiles = Callable[..., Awaitable[list[Score]]]
RunHarness = Callable[..., Awaitable[HarnessResult]]


def _plan(
    settings: Settings,
    catalog: Catalog,
    task: Task,
    submissions: Mapping[str, Mapping[str, str]],
    repeats: int,
):
    data = ensure_track_data(catalog.track(task.track), settings.data_dir)
    rules = settings.scorer.model_copy(update={"repeats": repeats})
    plan = build_plan(
        session_id=f"redteam{uuid.uuid4().hex[:8]}",
        task=task,
        data=data,
        submissions=submissions,
        settings=rules,
    )
    return plan, rules


@pytest.fixture
def score_unchecked(settings: Settings, catalog: Catalog) -> ScoreFiles:
    """Score submissions (attempt id -> files) of ``task`` in one session, skipping the static rules."""

    async def go(task: Task, submissions: Mapping[str, Mapping[str, str]], repeats: int = 1) -> list[Score]:
        plan, rules = _plan(settings, catalog, task, submissions, repeats)
        return await run_session(LocalBackend(settings), plan, list(submissions), lambda e: None, rules)

    return go


@pytest.fixture
def run_harness(settings: Settings, catalog: Catalog) -> RunHarness:
    """The raw measurements of one session (no control checks)."""

    async def go(task: Task, submissions: Mapping[str, Mapping[str, str]]) -> HarnessResult:
        plan, _ = _plan(settings, catalog, task, submissions, 1)
        plan = plan.model_copy(update={"runs": [r for r in plan.runs if r.attempt_id is not None]})
        return await LocalBackend(settings).run_scorer(plan, lambda e: None)

    return go
