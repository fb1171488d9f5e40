"""``speedrun report``: the leaderboard on stdout, or a static HTML site with plots."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orchestrator.cli import views
from orchestrator.cli.common import command, group, open_orchestrator, progress
from orchestrator.errors import UsageError
from orchestrator.report.data import LeaderRow, leaderboard, load
from orchestrator.report.html import write_site

app = group()


@app.command()
@command
async def report(
    html: Annotated[
        Path | None, typer.Option(help="Write a static site (index.html, attempts/) to this folder.")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the leaderboard as JSON.")] = False,
) -> None:
    """Leaderboard per task and agent (FSR, success rate, cost); --html adds plots and timelines."""
    if html is not None and html.exists() and not html.is_dir():
        raise UsageError(f"--html {html}: exists and is not a folder")
    async with open_orchestrator(recover=False) as orch:
        if task is not None:
            orch.catalog.task(task)  # an unknown task is an error, not an empty report
        details = await load(orch.store, task)
        targets = {t: orch.catalog.task(t).target_val_loss for t in {d.attempt.task_id for d in details}}
    if not details:  # a fresh store is not an error: there is just nothing yet
        if as_json:
            views.print_json([])
        else:
            views.stdout.print("no finished attempts" + (f" of task {task}" if task else "") + " yet")
        if html is not None:
            progress(f"no site written to {html}: nothing to report")
        return
    rows = leaderboard(details)
    if html is not None:
        index = write_site(details, html, targets)
        progress(f"report written: {index}")
    if as_json:
        views.print_json([asdict(r) for r in rows])
    else:
        views.stdout.print(_table(rows))


def _table(rows: list[LeaderRow]) -> Table:
    table = Table(title="Leaderboard")
    for name in ("task", "agent", "model", "attempts", "success", "FSR mean", "FSR 95% CI", "best", "wall s"):
        table.add_column(name)
    for r in rows:
        ci = "—" if r.fsr_interval is None else f"[{r.fsr_interval[0]:.3f}, {r.fsr_interval[1]:.3f}]"
        table.add_row(
            r.task,
            r.agent,
            r.model,
            str(r.attempts),
            f"{r.scored}/{r.decided}",
            "—" if r.fsr_mean is None else f"{r.fsr_mean:.3f}",
            ci,
            "—" if r.fsr_best is None else f"{r.fsr_best:.3f}",
            f"{r.wall_seconds:.1f}",
        )
    return table
