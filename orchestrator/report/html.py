"""The report as a static site: index.html (leaderboard, plots) and one page per attempt.

Self-contained: styles and plots are inline, nothing is fetched, so the folder
can be copied anywhere and opened offline.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path

from orchestrator import __version__
from orchestrator.report import svg
from orchestrator.report.data import AttemptDetail, LeaderRow, leaderboard, timeline

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1100px; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
.muted { color: #777; } .plots { display: flex; flex-wrap: wrap; gap: 1rem; }
svg.plot { background: #fff; border: 1px solid #ddd; font-size: 12px; }
svg.plot .grid { stroke: #eee; } svg.plot .mark { stroke: #888; stroke-dasharray: 4 4; }
svg.plot .plot-title { font-weight: bold; font-size: 14px; }
"""


def _num(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _interval(iv: tuple[float, float] | None, digits: int = 3) -> str:
    return "" if iv is None else f" <span class=muted>[{iv[0]:.{digits}f}, {iv[1]:.{digits}f}]</span>"


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style>'
        f"</head><body>{body}<p class=muted>speedrun-orchestrator {__version__}, generated "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}</p></body></html>"
    )


def _table(headers: list[str], rows: Iterable[list[str]], table_id: str) -> str:
    """Cells are HTML already; the first three columns and the last are text, left-aligned."""

    def cls(i: int) -> str:
        return "l" if i < 3 or i == len(headers) - 1 else ""

    head = "".join(f'<th class="{cls(i)}">{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td class="{cls(i)}">{c}</td>' for i, c in enumerate(r)) + "</tr>" for r in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _leaderboard_table(rows: list[LeaderRow]) -> str:
    headers = [
        "task",
        "agent",
        "model",
        "attempts",
        "success rate [95% CI]",
        "FSR mean [95% CI]",
        "best FSR",
        "outcomes",
        "wall s",
        "scorer s",
        "LLM $",
    ]
    return _table(
        headers,
        (
            [
                escape(r.task),
                escape(r.agent),
                escape(r.model),
                str(r.attempts),
                (f"{r.scored}/{r.decided} = {r.success_rate:.0%}" if r.success_rate is not None else "—")
                + _interval(r.success_interval, 2),
                _num(r.fsr_mean) + _interval(r.fsr_interval),
                _num(r.fsr_best),
                escape(", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()))),
                f"{r.wall_seconds:.1f}",
                f"{r.scorer_seconds:.1f}",
                _num(r.llm_cost_dollars, 2),
            ]
            for r in rows
        ),
        "leaderboard",
    )


def _fsr_plot(rows: list[LeaderRow]) -> str:
    items = [
        svg.Interval(
            group=r.task,
            series=r.agent if r.model == "none" else f"{r.agent} ({r.model})",
            value=r.fsr_mean,
            low=r.fsr_interval[0] if r.fsr_interval else None,
            high=r.fsr_interval[1] if r.fsr_interval else None,
        )
        for r in rows
        if r.fsr_mean is not None
    ]
    if not items:
        return "<p class=muted>No scored attempts yet: no FSR to plot.</p>"
    return svg.interval_plot("FSR by task (mean, 95% CI)", "FSR", items, marks=(0.0, 1.0))


def _loss_plot(task: str, details: list[AttemptDetail], target: float | None) -> str | None:
    """Repeat 0 of baseline, reference and every scored submission of the task."""
    series: list[svg.Series] = []
    controls: set[str] = set()
    for d in details:
        for run in (d.score or {}).get("runs", []):
            if run["repeat"] != 0 or not run.get("curve"):
                continue
            role = run["role"]
            if role == "submission":
                if run.get("attempt_id") != d.attempt.id:
                    continue
                name = f"{d.attempt.agent} {d.attempt.id[:6]}"
            elif role in controls:
                continue
            else:
                controls.add(role)
                name = role
            series.append(svg.Series(name, [tuple(p) for p in run["curve"]], dashed=role != "submission"))
    if not series:
        return None
    return svg.line_plot(f"Loss curves: {task}", "seconds (scorer's clock)", "val loss", series, hline=target)


def _attempts_table(details: list[AttemptDetail]) -> str:
    return _table(
        ["attempt", "task", "agent", "outcome", "FSR", "t_sub s", "tool calls", "experiments", "reason"],
        (
            [
                f'<a href="attempts/{escape(d.attempt.id)}.html">{escape(d.attempt.id)}</a>',
                escape(d.attempt.task_id),
                escape(d.attempt.agent),
                escape(d.attempt.outcome.value if d.attempt.outcome else "—"),
                _num(d.fsr) + _interval(d.fsr_interval),
                _num((d.score or {}).get("submission_seconds"), 2),
                str(len(d.calls)),
                str(len(d.experiments)),
                escape((d.attempt.reason or "")[:200]),
            ]
            for d in details
        ),
        "attempts",
    )


def _attempt_page(d: AttemptDetail) -> str:
    a = d.attempt
    events = timeline(d)
    spans = [svg.Span(e.kind, e.start, e.end, e.detail) for e in events]
    score = d.score or {}
    facts = [
        ("task", a.task_id),
        ("agent", a.agent),
        ("model", d.model),
        ("backend", a.backend),
        ("outcome", a.outcome.value if a.outcome else "—"),
        ("reason", a.reason or ""),
        ("FSR", _num(d.fsr)),
        (
            "baseline / reference / submission s",
            " / ".join(
                _num(score.get(k), 2) for k in ("baseline_seconds", "reference_seconds", "submission_seconds")
            ),
        ),
        ("flags", ", ".join(score.get("flags", [])) or "none"),
        ("wall time s", f"{a.updated_at - a.created_at:.1f}"),
    ]
    body = [
        f"<p><a href='../index.html'>&larr; report</a></p><h1>Attempt {escape(a.id)}</h1>",
        "<table>"
        + "".join(f"<tr><th class=l>{escape(k)}</th><td class=l>{escape(v)}</td></tr>" for k, v in facts)
        + "</table>",
        "<h2>Timeline</h2>",
        svg.timeline(f"Attempt {a.id}", spans) if spans else "<p class=muted>Nothing recorded.</p>",
        _table(
            ["start s", "end s", "kind", "what"],
            ([f"{e.start:.2f}", f"{e.end:.2f}", escape(e.kind), escape(e.detail)] for e in events),
            "timeline",
        ),
    ]
    return _page(f"Attempt {a.id}", "".join(body))


def write_site(
    details: list[AttemptDetail], out: Path, targets: Mapping[str, float], title: str = "Speedrun report"
) -> Path:
    """Write index.html and attempts/<id>.html under ``out``; returns the index path.

    ``targets``: task id -> target validation loss, marked on the loss curves.
    """
    rows = leaderboard(details)
    tasks = list(dict.fromkeys(d.attempt.task_id for d in details))
    loss_plots = [
        plot
        for t in tasks
        if (plot := _loss_plot(t, [d for d in details if d.attempt.task_id == t], targets.get(t)))
    ]
    body = [
        f"<h1>{escape(title)}</h1>",
        f"<p>{len(details)} finished attempt(s) over {len(tasks)} task(s). "
        "FSR = (t_baseline - t_submission) / (t_baseline - t_reference): 1 recovers the record's "
        "whole speedup, 0 none. Success rate counts scored attempts among those not lost to "
        "infrastructure or cancelled.</p>",
        "<h2>Leaderboard</h2>",
        _leaderboard_table(rows),
        "<h2>Plots</h2><div class=plots>",
        _fsr_plot(rows),
        *loss_plots,
        "</div><h2>Attempts</h2>",
        _attempts_table(details),
    ]
    (out / "attempts").mkdir(parents=True, exist_ok=True)
    for d in details:
        (out / "attempts" / f"{d.attempt.id}.html").write_text(_attempt_page(d), encoding="utf-8")
    index = out / "index.html"
    index.write_text(_page(title, "".join(body)), encoding="utf-8")
    return index
