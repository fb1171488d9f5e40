"""The ``speedrun`` command line: assembles the command modules' apps, nothing else.

Results go to stdout (tables, or JSON with --json); progress and logs to stderr.
Errors are one clear line and an exit code, never a traceback:
2 bad input, 3 infrastructure, 1 anything else of ours (orchestrator/cli/common.py).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from orchestrator.cli import (
    attempts,
    batch,
    cleanup,
    data,
    hints,
    images,
    records,
    report,
    run,
    serve,
    tasks,
)

app = typer.Typer(
    help="Run the Automated LLM Speedrunning Benchmark: tasks, agents, sandboxes, scores.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# top-level commands, in the order --help lists them
for module in (run, batch, cleanup, serve, report):
    app.add_typer(module.app)
app.add_typer(tasks.app, name="tasks")
app.add_typer(records.app, name="records")
app.add_typer(attempts.app, name="attempts")
app.add_typer(data.app, name="data")
app.add_typer(hints.app, name="hints")
app.add_typer(images.app, name="images")


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"speedrun {version('speedrun-orchestrator')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Run the Automated LLM Speedrunning Benchmark: tasks, agents, sandboxes, scores."""


def main() -> None:
    app(prog_name="speedrun")


if __name__ == "__main__":
    main()
