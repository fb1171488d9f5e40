"""``speedrun demo|run|score``: attempts from the command line, one task at a time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

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
from orchestrator.errors import NotFound, UsageError

app = group()

DEMO_TASK = "tiny-r1-r2"


@app.command()
@command
async def demo(
    task: Annotated[str, typer.Option(help="Task to demonstrate.")] = DEMO_TASK,
    repeats: Annotated[int, typer.Option(min=1, help="Scorer repeats R.")] = 1,
    backend: Annotated[str, typer.Option(help="Backend: local (embedded default) or docker.")] = "local",
    as_json: JsonFlag = False,
) -> None:
    """The benchmark end to end on the embedded default: oracle and null agents on a tiny task."""
    async with open_orchestrator(backend) as orch:
        chosen = orch.catalog.task(task)
        progress(
            f"demo: task {chosen.id} ({chosen.reference.manifest.summary}); agents oracle and null; "
            "the scorer times baseline, reference and both submissions"
        )
        attempts = await orch.run(chosen, ["oracle", "null"], repeats=repeats)
        rows = await attempt_rows(orch, [a.id for a in attempts])
    if as_json:
        views.print_json(rows)
    else:
        views.stdout.print(views.attempts_table(rows, title=f"Demo: {chosen.id}"))
        views.stdout.print(
            "FSR = (t_baseline - t_submission) / (t_baseline - t_reference): "
            "oracle should be near 1, null near 0."
        )
    exit_for_outcomes(rows)


@app.command()
@command
async def run(
    task: Annotated[str, typer.Option(help="Task id (see `speedrun tasks list`).")],
    agent: Annotated[str, typer.Option(help="Agent name, e.g. oracle or null.")],
    backend: Annotated[str | None, typer.Option(help="Backend (default from settings: local).")] = None,
    repeats: Annotated[int | None, typer.Option(min=1, help="Scorer repeats R.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name from the catalog (llm.models).")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="Agent parameter KEY=VALUE (VALUE as JSON, else text); repeatable."),
    ] = None,
    hints: Annotated[
        int | None, typer.Option(min=1, max=3, help="Hint level 1-3 from the task's pack.")
    ] = None,
    knowledge: Annotated[
        list[str] | None, typer.Option(help="Knowledge file: a path or glob; repeatable.")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Token budget of the attempt.")] = None,
    max_cost: Annotated[float | None, typer.Option(min=0, help="Cost budget of the attempt (USD).")] = None,
    max_experiments: Annotated[int | None, typer.Option(min=0, help="Experiments the agent may run.")] = None,
    max_wall_s: Annotated[float | None, typer.Option(min=1, help="Wall time of the agent phase.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run one attempt: sandbox, agent, submission, score."""
    limits = {"max_experiments": max_experiments, "attempt_timeout_s": max_wall_s}
    sandbox = {k: v for k, v in limits.items() if v is not None} or None
    async with open_orchestrator(backend, sandbox=sandbox) as orch:
        chosen = orch.catalog.task(task)
        budget = orch.settings.budget.model_copy(
            update={k: v for k, v in {"max_tokens": max_tokens, "max_cost_usd": max_cost}.items() if v}
        )
        config = orch.agent_config(
            chosen,
            agent,
            model=model,
            params=agent_params(param or []),
            hints=hints,
            knowledge=knowledge,
            budget=budget,
        )
        [attempt] = await orch.run(chosen, [agent], repeats=repeats, configs=[config])
        [row] = await attempt_rows(orch, [attempt.id])
    _show(row, as_json)


@app.command()
@command
async def score(
    path: Annotated[Path, typer.Argument(help="A script file, or a folder of editable files.")],
    task: Annotated[str, typer.Option(help="Task whose baseline and reference to time it against.")],
    repeats: Annotated[int | None, typer.Option(min=1, help="Scorer repeats R.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Score a submission from disk, standalone (no agent)."""
    async with open_orchestrator() as orch:
        chosen = orch.catalog.task(task)
        files = _read_submission(path, chosen.baseline.manifest.launch.script)
        attempt = await orch.score_submission(chosen, files, source=str(path), repeats=repeats)
        [row] = await attempt_rows(orch, [attempt.id])
    _show(row, as_json)


def _show(row: dict[str, Any], as_json: bool) -> None:
    """One attempt's row, as JSON or a table; then the exit code its outcome calls for."""
    if as_json:
        views.print_json(row)
    else:
        views.stdout.print(views.attempts_table([row]))
    exit_for_outcomes([row])


def agent_params(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE parsed as JSON when it is JSON (numbers, booleans), else kept as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _read_submission(path: Path, script: str) -> dict[str, bytes]:
    """A file is the launch script; a folder gives every file under it (symlinks skipped)."""
    if path.is_file():
        return {script: path.read_bytes()}
    if path.is_dir():
        return {
            p.relative_to(path).as_posix(): p.read_bytes()
            for p in sorted(path.rglob("*"))
            if p.is_file() and not p.is_symlink()
        }
    raise NotFound(f"{path}: no such file or folder")
