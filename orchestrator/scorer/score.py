"""From measurements to a score: FSR = (t_baseline - t_submission) / (t_baseline - t_reference).

Times are the scorer's own (launch to the target line), averaged over repeats.
A constant start-up cost adds to all three times alike and cancels in FSR.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator.domain import Outcome
from orchestrator.errors import ScorerError
from orchestrator.scorer.plan import Flag, Role, RunMeasurement

# two-sided 95% Student t quantiles by degrees of freedom (1..10); normal beyond
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]


class RoleSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs: int
    reached: int
    mean_seconds: float | None
    ci95_seconds: float | None
    """Half-width of the 95% confidence interval of the mean (None for one run)."""
    mean_val_loss: float | None
    mean_reported_train_s: float | None


class Score(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str
    task_id: str
    attempt_id: str
    outcome: Outcome
    reason: str | None
    fsr: float | None
    baseline_seconds: float
    reference_seconds: float
    submission_seconds: float | None
    val_loss: float | None
    reached_target: bool
    flags: list[str]
    repeats: int
    baseline: RoleSummary
    reference: RoleSummary
    submission: RoleSummary
    runs: list[RunMeasurement]
    fingerprint: dict[str, Any]
    fingerprint_hash: str


class ControlRunsFailed(ScorerError):
    """Baseline or reference failed in our own harness: the platform's fault, not the agent's."""

    code = "control_runs_failed"


def _ci95(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    df = len(values) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96
    return t * statistics.stdev(values) / math.sqrt(len(values))


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarise(runs: list[RunMeasurement]) -> RoleSummary:
    times = [r.seconds_to_target for r in runs if r.seconds_to_target is not None]
    losses = [r.val_loss for r in runs if r.val_loss is not None and math.isfinite(r.val_loss)]
    reported = [r.reported_train_ms / 1000 for r in runs if r.reported_train_ms is not None]
    return RoleSummary(
        runs=len(runs),
        reached=sum(r.reached_target for r in runs),
        mean_seconds=_mean(times),
        ci95_seconds=_ci95(times),
        mean_val_loss=_mean(losses),
        mean_reported_train_s=_mean(reported),
    )


def check_controls(measurements: list[RunMeasurement]) -> tuple[RoleSummary, RoleSummary]:
    """Summaries of baseline and reference.

    Raises:
        ControlRunsFailed: a control run failed, or the reference is not faster.
    """
    summaries = []
    for role in (Role.BASELINE, Role.REFERENCE):
        runs = [m for m in measurements if m.role is role]
        bad = [m for m in runs if not m.reached_target or m.flags]
        if not runs or bad:
            detail = "; ".join(f"{m.label}: {', '.join(m.flags)}" for m in bad) or "no runs"
            raise ControlRunsFailed(f"{role} runs failed in the scorer: {detail}")
        summaries.append(summarise(runs))
    baseline, reference = summaries
    assert baseline.mean_seconds is not None and reference.mean_seconds is not None
    if reference.mean_seconds >= baseline.mean_seconds:
        raise ControlRunsFailed(
            f"reference ({reference.mean_seconds:.2f}s) is not faster than baseline "
            f"({baseline.mean_seconds:.2f}s) on this hardware: FSR is undefined"
        )
    return baseline, reference


def score_submission(
    *,
    session_id: str,
    task_id: str,
    attempt_id: str,
    measurements: list[RunMeasurement],
    baseline: RoleSummary,
    reference: RoleSummary,
    repeats: int,
    fingerprint: dict[str, Any],
    fingerprint_hash: str,
) -> Score:
    mine = [m for m in measurements if m.role is Role.SUBMISSION and m.attempt_id == attempt_id]
    controls = [m for m in measurements if m.role is not Role.SUBMISSION]
    summary = summarise(mine)
    flags = sorted({f.value for m in mine for f in m.flags})
    reached = bool(mine) and all(m.reached_target for m in mine)
    tb, tr = baseline.mean_seconds, reference.mean_seconds
    assert tb is not None and tr is not None
    if reached and not flags and summary.mean_seconds is not None:
        outcome, reason = Outcome.SCORED, None
        fsr: float | None = round((tb - summary.mean_seconds) / (tb - tr), 4)
    else:
        outcome = Outcome.SUBMISSION_FAILED
        reason = (
            "; ".join(
                f"{m.label}: {', '.join(m.flags)} (exit {m.reason}, code {m.returncode})"
                for m in mine
                if m.flags
            )
            or "no submission runs"
        )
        fsr = None
    return Score(
        session_id=session_id,
        task_id=task_id,
        attempt_id=attempt_id,
        outcome=outcome,
        reason=reason,
        fsr=fsr,
        baseline_seconds=round(tb, 4),
        reference_seconds=round(tr, 4),
        submission_seconds=None if summary.mean_seconds is None else round(summary.mean_seconds, 4),
        val_loss=summary.mean_val_loss,
        reached_target=reached,
        flags=flags,
        repeats=repeats,
        baseline=baseline,
        reference=reference,
        submission=summary,
        runs=controls + mine,
        fingerprint=fingerprint,
        fingerprint_hash=fingerprint_hash,
    )


def rejected_submission(
    *, session_id: str, task_id: str, attempt_id: str, reason: str, fingerprint_hash: str
) -> dict[str, Any]:
    """The stored result of a submission refused before running (no times measured)."""
    return {
        "session_id": session_id,
        "task_id": task_id,
        "attempt_id": attempt_id,
        "outcome": Outcome.SUBMISSION_FAILED.value,
        "reason": reason,
        "fsr": None,
        "reached_target": False,
        "flags": [Flag.INVALID_SUBMISSION.value],
        "fingerprint_hash": fingerprint_hash,
    }
