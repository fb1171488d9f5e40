"""``speedrun serve``: the orchestrator as a long-running service.

It serves /metrics and /healthz until SIGINT or SIGTERM and, given a batch file, runs
(or resumes) that batch while it serves (orchestrator/batch.py): in a cluster, a
restarted orchestrator pod picks its batch up where the killed one left it. Attempts
still running when it is stopped end as cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from orchestrator import service
from orchestrator.batch import BatchSpec, run_batch
from orchestrator.cli import views
from orchestrator.cli.common import attempt_rows, command, group, open_orchestrator, progress
from orchestrator.errors import UsageError

app = group()


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` stops it and then cleans up."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@app.command()
@command
async def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of /metrics and /healthz.")] = 9464,
    batch_file: Annotated[
        Path | None, typer.Option("--batch", help="Batch file to run (or resume) while serving.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the batch's results as JSON.")] = False,
) -> None:
    """Serve Prometheus metrics at /metrics; optionally run (or resume) a batch meanwhile."""
    spec = BatchSpec.load(batch_file) if batch_file is not None else None  # bad files fail first
    async with open_orchestrator() as orch:
        if spec is not None:
            for task_id in spec.tasks:  # unknown tasks fail before serving
                orch.catalog.task(task_id)
        server = _Server(
            uvicorn.Config(service.create_app(orch.store), host=host, port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                await serving
                raise UsageError(f"cannot listen on {host}:{port}")
            await asyncio.sleep(0.05)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        progress(f"serving metrics at http://{host}:{port}/metrics (stop with Ctrl-C or SIGTERM)")
        batch = asyncio.create_task(run_batch(orch, spec, progress) if spec else _no_batch())
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({serving, batch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if batch.done() and not batch.cancelled() and batch.exception() is None:
                if batch.result():
                    rows = await attempt_rows(orch, batch.result())
                    if as_json:
                        views.print_json(rows)
                    else:
                        views.stdout.print(views.attempts_table(rows, title="Batch"))
                    progress("batch finished; still serving")
                await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            for work in (batch, stopping):
                work.cancel()
            server.should_exit = True
            await serving
            with contextlib.suppress(asyncio.CancelledError):
                await batch  # an attempt cut short ends as cancelled; a failed batch raises here
        progress("stopped")


async def _no_batch() -> list[str]:
    return []
