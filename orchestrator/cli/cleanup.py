"""``speedrun cleanup``: remove what crashed attempts left behind on a backend."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator import metrics
from orchestrator.cli import views
from orchestrator.cli.common import JsonFlag, command, group, open_orchestrator

app = group()


@app.command()
@command
async def cleanup(
    backend: Annotated[str | None, typer.Option(help="Backend (default from settings: local).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Remove processes, containers or pods that crashed attempts left behind."""
    async with open_orchestrator(backend, recover=False) as orch:
        removed = await orch.backend.cleanup(await orch.live_ids())
        metrics.leaked_resources_removed(orch.backend.name, len(removed))
    if as_json:
        views.print_json(removed)
    else:
        for item in removed:
            views.stdout.print(f"removed {item}", markup=False)
        views.stdout.print(f"{len(removed)} leftover resource(s) removed")
