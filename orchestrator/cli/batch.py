"""``speedrun batch``: a matrix of tasks x agents x hints x seeds from a TOML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.batch import BatchSpec, run_batch
from orchestrator.cli import views
from orchestrator.cli.common import (
    JsonFlag,
    attempt_rows,
    command,
    exit_for_outcomes,
    group,
    open_orchestrator,
    progress,
)

app = group()


@app.command()
@command
async def batch(
    path: Annotated[Path, typer.Argument(help="Batch file (TOML): tasks, agents, hints, seeds.")],
    backend: Annotated[str | None, typer.Option(help="Backend (default from settings: local).")] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Groups in flight at once (overrides the file).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a matrix of tasks x agents x hints x seeds; running it again resumes it."""
    spec = BatchSpec.load(path)
    if concurrency is not None:
        spec = spec.model_copy(update={"concurrency": concurrency})
    async with open_orchestrator(backend) as orch:
        attempt_ids = await run_batch(orch, spec, progress)
        rows = await attempt_rows(orch, attempt_ids)
    if as_json:
        views.print_json(rows)
    else:
        views.stdout.print(views.attempts_table(rows, title=f"Batch {spec.name}"))
    exit_for_outcomes(rows)  # 3: cells lost to infrastructure; running the batch again retries them
