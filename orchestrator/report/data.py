"""What the report shows, computed from the store: attempts, the leaderboard, timelines.

Leaderboard rules, per task and agent (and model, for LLM agents):
- success rate = scored / decided, where decided excludes infrastructure failures
  and cancellations (neither is the agent's doing); 95% Wilson interval;
- FSR = mean over scored attempts; its 95% interval is Student's t over attempts
  when there are two or more, else the one attempt's own interval from the
  scorer's repeats (its submission-time interval divided by t_baseline - t_reference);
- cost = wall time, scorer seconds spent on its submissions, and LLM dollars when
  the agent used a model (its stored report's ``usage.cost_usd``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from orchestrator.domain import Attempt, AttemptState, ExperimentRecord, Outcome, ToolCall
from orchestrator.metrics import model_of
from orchestrator.scorer.stats import mean_ci
from orchestrator.store.base import Store

_NOT_DECIDED = frozenset({Outcome.INFRA_FAILED, Outcome.CANCELLED})


@dataclass(frozen=True)
class AttemptDetail:
    attempt: Attempt
    score: dict[str, Any] | None
    calls: list[ToolCall]
    experiments: list[ExperimentRecord]
    agent_report: dict[str, Any] | None = None

    @property
    def model(self) -> str:
        return model_of(self.attempt)

    @property
    def fsr(self) -> float | None:
        return (self.score or {}).get("fsr")

    @property
    def fsr_interval(self) -> tuple[float, float] | None:
        """The scorer's own interval from its paired repeats; None with one repeat or no score."""
        interval = (self.score or {}).get("fsr_ci95")
        return (interval[0], interval[1]) if interval else None

    @property
    def submission_runs(self) -> list[dict[str, Any]]:
        runs = (self.score or {}).get("runs", [])
        return [r for r in runs if r["role"] == "submission" and r.get("attempt_id") == self.attempt.id]

    @property
    def llm_cost_dollars(self) -> float | None:
        usage = (self.agent_report or {}).get("usage") or {}
        cost = usage.get("cost_usd") if isinstance(usage, dict) else None
        return float(cost) if isinstance(cost, int | float) else None


@dataclass
class LeaderRow:
    task: str
    agent: str
    model: str
    attempts: int = 0
    decided: int = 0
    scored: int = 0
    success_rate: float | None = None
    success_interval: tuple[float, float] | None = None
    fsr_mean: float | None = None
    fsr_interval: tuple[float, float] | None = None
    fsr_best: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    scorer_seconds: float = 0.0
    llm_cost_dollars: float | None = None


async def load(store: Store, task: str | None = None) -> list[AttemptDetail]:
    """Finished attempts (of one task, or all), oldest first, with everything they recorded."""
    attempts = await store.list_attempts(task_id=task, states=[AttemptState.FINISHED], limit=1_000_000)
    details = []
    for a in sorted(attempts, key=lambda a: a.created_at):
        details.append(
            AttemptDetail(
                attempt=a,
                score=await store.get_score(a.id),
                calls=await store.tool_calls(a.id),
                experiments=await store.experiments(a.id),
                agent_report=await store.get_agent_report(a.id),
            )
        )
    return details


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def leaderboard(details: list[AttemptDetail]) -> list[LeaderRow]:
    """One row per (task, agent, model), best mean FSR first within each task."""
    rows: dict[tuple[str, str, str], LeaderRow] = {}
    scored: dict[tuple[str, str, str], list[AttemptDetail]] = {}
    for d in details:
        a = d.attempt
        key = (a.task_id, a.agent, d.model)
        row = rows.setdefault(key, LeaderRow(task=a.task_id, agent=a.agent, model=d.model))
        outcome = a.outcome or Outcome.INFRA_FAILED
        row.attempts += 1
        row.outcomes[outcome.value] = row.outcomes.get(outcome.value, 0) + 1
        row.decided += outcome not in _NOT_DECIDED
        row.wall_seconds += a.updated_at - a.created_at
        row.scorer_seconds += sum(r["wall_s"] for r in d.submission_runs)
        if d.llm_cost_dollars is not None:
            row.llm_cost_dollars = (row.llm_cost_dollars or 0.0) + d.llm_cost_dollars
        if outcome is Outcome.SCORED and d.fsr is not None:
            row.scored += 1
            scored.setdefault(key, []).append(d)
    for key, row in rows.items():
        if row.decided:
            row.success_rate = row.scored / row.decided
            row.success_interval = wilson(row.scored, row.decided)
        mine = scored.get(key, [])
        fsrs = [d.fsr for d in mine if d.fsr is not None]
        if fsrs:
            row.fsr_mean = statistics.fmean(fsrs)
            row.fsr_best = max(fsrs)
            interval = mean_ci(fsrs)
            if interval is not None:
                row.fsr_interval = interval
            elif len(mine) == 1:
                row.fsr_interval = mine[0].fsr_interval
    return sorted(
        rows.values(),
        key=lambda r: (r.task, -(r.fsr_mean if r.fsr_mean is not None else -math.inf), r.agent, r.model),
    )


@dataclass(frozen=True)
class Event:
    start: float
    """Seconds since the attempt was created."""
    end: float
    kind: str
    """tool call, experiment, scoring."""
    detail: str


def timeline(d: AttemptDetail) -> list[Event]:
    """Tool calls (experiments run inside them), then the scorer's runs.

    The scorer records run durations, not start times: this attempt's runs (its
    submission's and the controls) are laid back to back by repeat, ending when the
    attempt finished; runs of other attempts in the same session are left out.
    """
    t0 = d.attempt.created_at
    events = [
        Event(
            start=c.created_at - c.duration_ms / 1000 - t0,
            end=c.created_at - t0,
            kind="experiment" if c.op == "run_experiment" else "tool call",
            detail=f"#{c.seq} {c.op} -> {c.status}" + (f" {c.error}" if c.error else ""),
        )
        for c in d.calls
    ]
    runs = sorted((d.score or {}).get("runs", []), key=lambda r: r["repeat"])
    end = d.attempt.updated_at - t0
    for run in reversed(runs):
        start = end - run["wall_s"]
        flags = ", ".join(run.get("flags", []))
        events.append(
            Event(
                start=start,
                end=end,
                kind="scoring",
                detail=f"{run['label']} ({run['role']}): {run['reason']}" + (f" [{flags}]" if flags else ""),
            )
        )
        end = start
    return sorted(events, key=lambda e: e.start)
