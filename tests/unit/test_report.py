"""Leaderboard arithmetic and the HTML site, from hand-made attempts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from orchestrator.domain import Attempt, AttemptState, Outcome, ToolCall
from orchestrator.report.data import AttemptDetail, leaderboard, timeline, wilson
from orchestrator.report.html import write_site


def detail(
    n: int, agent: str, outcome: Outcome, fsr: float | None, ci95: float | None = None
) -> AttemptDetail:
    a = Attempt(
        id=f"{agent}-{n}",
        task_id="tiny-r1-r2",
        agent=agent,
        backend="local",
        state=AttemptState.FINISHED,
        outcome=outcome,
        reason="<b>why</b>" if outcome is not Outcome.SCORED else None,
        version=4,
        owner=None,
        lease_expires_at=None,
        config={},
        sandbox=None,
        created_at=100.0,
        updated_at=160.0,
    )
    score = None
    if fsr is not None:
        score = {
            "fsr": fsr,
            "baseline_seconds": 10.0,
            "reference_seconds": 6.0,
            "submission_seconds": 10 - 4 * fsr,
            "fsr_ci95": None if ci95 is None else [fsr - ci95 / 4, fsr + ci95 / 4],
            "runs": [
                {"label": "r0-baseline", "role": "baseline", "repeat": 0, "reason": "stopped", "wall_s": 10.0,
                 "curve": [[1.0, 3.0], [10.0, 1.0]]},
                {"label": f"r0-sub-{a.id}", "role": "submission", "attempt_id": a.id, "repeat": 0,
                 "reason": "stopped", "wall_s": 8.0, "curve": [[1.0, 3.0], [8.0, 1.0]]},
            ],
        }  # fmt: skip
    call = ToolCall(seq=0, op="submit", request={}, status=200, duration_ms=5.0, created_at=110.0)
    report = {"model": "m", "usage": {"cost_usd": 0.5}} if agent == "llm" else None
    return AttemptDetail(attempt=a, score=score, calls=[call], experiments=[], agent_report=report)


def test_wilson_interval() -> None:
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 0) is None


def test_leaderboard_rates_intervals_and_cost() -> None:
    details = [
        detail(1, "llm", Outcome.SCORED, 0.5),
        detail(2, "llm", Outcome.SCORED, 0.7),
        detail(3, "llm", Outcome.SUBMISSION_FAILED, None),
        detail(4, "llm", Outcome.INFRA_FAILED, None),  # not the agent's doing: not decided
        detail(1, "oracle", Outcome.SCORED, 1.0, ci95=0.4),
    ]
    oracle, llm = leaderboard(details)  # best mean FSR first
    assert (llm.attempts, llm.decided, llm.scored) == (4, 3, 2)
    assert llm.success_rate == pytest.approx(2 / 3)
    assert llm.fsr_mean == pytest.approx(0.6) and llm.fsr_best == 0.7
    half = 12.706 * math.sqrt(0.02) / math.sqrt(2)  # t(1 df) x sd / sqrt(n)
    assert llm.fsr_interval == pytest.approx((0.6 - half, 0.6 + half), rel=1e-4)
    assert llm.llm_cost_dollars == pytest.approx(2.0) and llm.outcomes["infra_failed"] == 1
    # one attempt: its own interval from the scorer's repeats, 0.4 s / (10 s - 6 s)
    assert oracle.fsr_interval == pytest.approx((0.9, 1.1))
    assert oracle.llm_cost_dollars is None


def test_timeline_orders_calls_then_scoring_runs() -> None:
    events = timeline(detail(1, "oracle", Outcome.SCORED, 1.0))
    assert [e.kind for e in events] == ["tool call", "scoring", "scoring"]
    assert events[-1].end == pytest.approx(60.0) and events[1].start == pytest.approx(60.0 - 18.0)


def test_site_escapes_text_and_links_attempt_pages(tmp_path: Path) -> None:
    details = [detail(1, "oracle", Outcome.SCORED, 1.0), detail(2, "null", Outcome.SUBMISSION_FAILED, None)]
    index = write_site(details, tmp_path / "site", {"tiny-r1-r2": 1.0})
    html = index.read_text()
    assert "&lt;b&gt;why&lt;/b&gt;" in html and "<b>why</b>" not in html
    assert (
        'href="attempts/oracle-1.html"' in html and (tmp_path / "site" / "attempts" / "null-2.html").is_file()
    )
    assert (
        'aria-label="FSR by task (mean, 95% CI)"' in html and 'aria-label="Loss curves: tiny-r1-r2"' in html
    )
