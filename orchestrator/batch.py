"""Batches: a matrix of tasks x agents x hint levels x seeds, run with bounded concurrency
and resumed after an interruption.

A batch file (TOML) names the matrix:

    name = "sweep-1"                  # the batch's identity: running it again resumes it
    tasks = ["tiny-r1-r2", "tiny-r2-r3"]
    hints = [0, 2]                    # 0: no hint (default [0])
    seeds = [0, 1]                    # independent replicas of each cell (default [0])
    repeats = 1                       # scorer repeats R (default: settings)
    concurrency = 2                   # groups in flight at once (default 1)

    [[agents]]
    name = "oracle"

    [[agents]]
    name = "tool-calling"
    model = "gpt-4o"
    params = {max_turns = 40}
    knowledge = ["notes/*.md"]        # briefing files, as `run --knowledge` (relative: to this file)

A group is one (task, hint, seed): its agents act side by side and are scored in one
session against one baseline and reference. Each attempt records its batch and cell in
its config; a rerun skips cells that already ended with a verdict on the submission
(scored, submission or agent failure), lets `recover` finish what a dead orchestrator
left mid-scoring, and gives cells that ended in an infrastructure failure or a
cancellation a new attempt, at most ``max_attempts`` per cell.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.domain import ACTIVE_STATES, Attempt, AttemptConfig, Outcome, Progress
from orchestrator.errors import UsageError, validation_problems
from orchestrator.lifecycle import Orchestrator

_VERDICTS = {Outcome.SCORED, Outcome.SUBMISSION_FAILED, Outcome.AGENT_FAILED}


class AgentEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    model: str | None = None
    params: dict[str, Any] = {}
    knowledge: list[str] = []
    """Globs of files the agent is briefed with besides the hint (``run --knowledge``)."""


class BatchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    tasks: list[str] = Field(min_length=1)
    agents: list[AgentEntry] = Field(min_length=1)
    hints: list[int] = Field(default=[0], min_length=1)
    seeds: list[int] = Field(default=[0], min_length=1)
    repeats: int | None = Field(default=None, ge=1)
    concurrency: int = Field(default=1, ge=1)
    max_attempts: int = Field(default=2, ge=1)
    """Attempts a cell may take when earlier ones ended in infrastructure failures."""

    @classmethod
    def load(cls, path: Path) -> BatchSpec:
        """Raises: UsageError naming the file and what is wrong with it."""
        try:
            raw = tomllib.loads(path.read_text())
        except OSError as e:
            raise UsageError(f"cannot read batch file {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"batch file {path} is not valid TOML: {e}") from None
        try:
            spec = cls.model_validate(raw)
        except ValidationError as e:
            raise UsageError(f"batch file {path}: {validation_problems(e)}") from None
        for agent in spec.agents:  # a batch file means the same wherever it is run from
            agent.knowledge = [str(path.parent / pattern) for pattern in agent.knowledge]
        return spec


def cell_key(task: str, agent: int, hint: int, seed: int) -> str:
    return f"{task}/agent{agent}/hint{hint}/seed{seed}"


async def run_batch(orch: Orchestrator, spec: BatchSpec, progress: Progress) -> list[str]:
    """Run (or resume) every cell; returns the attempt ids of the batch's final attempts."""
    tasks = {t: orch.catalog.task(t) for t in spec.tasks}  # unknown tasks fail before anything runs
    configs = {
        (i, hint): orch.agent_config(
            tasks[task_id], a.name, model=a.model, params=a.params, hints=hint or None, knowledge=a.knowledge
        )
        for task_id in spec.tasks
        for i, a in enumerate(spec.agents)
        for hint in spec.hints
    }
    await _take_over_orphans(orch, spec.name, progress)
    earlier = _by_cell(await orch.store.list_attempts(limit=1_000_000), spec.name)
    gate = asyncio.Semaphore(spec.concurrency)

    async def group(task_id: str, hint: int, seed: int) -> None:
        todo: list[tuple[int, AttemptConfig]] = []
        for i, _ in enumerate(spec.agents):
            key = cell_key(task_id, i, hint, seed)
            tried = earlier.get(key, [])
            if any(a.outcome in _VERDICTS or a.state in ACTIVE_STATES for a in tried):
                continue  # done, or being finished by recover
            if len(tried) >= spec.max_attempts:
                progress(f"batch {spec.name}: {key} gave up after {len(tried)} attempt(s)")
                continue
            todo.append(
                (i, configs[(i, hint)].model_copy(update={"batch": spec.name, "cell": key, "seed": seed}))
            )
        if not todo:
            return
        async with gate:
            progress(f"batch {spec.name}: {task_id} hint {hint} seed {seed}: {len(todo)} attempt(s)")
            agents = [spec.agents[i].name for i, _ in todo]
            await orch.run(tasks[task_id], agents, repeats=spec.repeats, configs=[c for _, c in todo])

    groups = itertools.product(spec.tasks, spec.hints, spec.seeds)
    await asyncio.gather(*(group(t, h, s) for t, h, s in groups))
    final = _by_cell(await orch.store.list_attempts(limit=1_000_000), spec.name)
    return [attempts[-1].id for _, attempts in sorted(final.items())]


async def _take_over_orphans(orch: Orchestrator, batch: str, progress: Progress) -> None:
    """Finish the batch's attempts another orchestrator left active, once they are orphaned.

    An orchestrator on this host that died is seen at once; one on another host (a pod
    replaced after its node or container was killed) only when its lease expires, which a
    restarted batch may come back before. A live owner is waited for: one batch, one runner.
    """
    while True:
        mine = [
            a
            for cell in _by_cell(await orch.store.list_attempts(limit=1_000_000), batch).values()
            for a in cell
        ]
        others = [a for a in mine if a.state in ACTIVE_STATES and a.owner != orch.owner]
        if not others:
            return
        if await orch.recover():
            continue
        expiry = min(a.lease_expires_at or 0.0 for a in others)
        wait_s = min(max(expiry - time.time(), 0.0) + 1.0, orch.settings.lease_ttl_s)
        progress(
            f"batch {batch}: {len(others)} attempt(s) held by another orchestrator; "
            f"taking them over when its lease expires (checking again in {wait_s:.0f}s)"
        )
        await asyncio.sleep(wait_s)


def _by_cell(attempts: list[Attempt], batch: str) -> dict[str, list[Attempt]]:
    """The batch's attempts per cell, oldest first."""
    cells: dict[str, list[Attempt]] = {}
    for attempt in sorted(attempts, key=lambda a: a.created_at):
        if attempt.config.batch == batch:
            cells.setdefault(str(attempt.config.cell), []).append(attempt)
    return cells
