"""The ``speedrun`` command line.

Results go to stdout (tables, or JSON with --json); progress and logs to stderr.
Errors are one clear line and an exit code, never a traceback:
2 bad input, 3 infrastructure, 1 anything else of ours.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from orchestrator import metrics
from orchestrator.backends import create_backend
from orchestrator.catalog.catalog import Catalog
from orchestrator.catalog.data import ensure_track_data
from orchestrator.cli import catalog_commands, views
from orchestrator.cli import hints as hints_cli
from orchestrator.cli import report as report_cli
from orchestrator.cli import serve as serve_cli
from orchestrator.domain import AttemptState
from orchestrator.errors import (
    InfrastructureError,
    NotFound,
    OrchestratorError,
    UsageError,
    validation_problems,
)
from orchestrator.lifecycle import Orchestrator
from orchestrator.log import configure_logging
from orchestrator.settings import Settings
from orchestrator.store import SqlStore

app = typer.Typer(
    help="Run the Automated LLM Speedrunning Benchmark: tasks, agents, sandboxes, scores.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tasks_app = typer.Typer(help="Tasks: record N -> record N+1.", no_args_is_help=True)
records_app = typer.Typer(help="Records of each track.", no_args_is_help=True)
attempts_app = typer.Typer(help="Attempts: list, inspect, cancel, resume.", no_args_is_help=True)
data_app = typer.Typer(help="Training data.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(records_app, name="records")
app.add_typer(attempts_app, name="attempts")
app.add_typer(data_app, name="data")

DEMO_TASK = "tiny-r1-r2"
_stderr = Console(stderr=True, highlight=False, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
T = TypeVar("T")


def _progress(message: str) -> None:
    _stderr.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {escape(message)}")


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        raise UsageError(f"invalid settings: {validation_problems(e, show_input=True)}") from None
    except ValueError as e:  # e.g. an unreadable config file
        raise UsageError(f"invalid settings: {e}") from None


def _catalog(settings: Settings) -> Catalog:
    return Catalog.load(settings.records_dir, settings.records_cache_dir)


def _fail(kind: str, error: Exception, code: int) -> NoReturn:
    _stderr.print(f"[bold red]{kind}:[/bold red] {escape(str(error))}")
    raise typer.Exit(code) from None


def command(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command; turn our errors into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            settings = _settings()
            configure_logging(settings.log_format, settings.log_level)
            return asyncio.run(fn(*args, **kwargs))
        except UsageError as e:
            _fail("error", e, 2)
        except InfrastructureError as e:
            _fail("infrastructure error", e, 3)
        except OrchestratorError as e:
            _fail("error", e, 1)
        except KeyboardInterrupt:
            _stderr.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


@asynccontextmanager
async def orchestrator(
    backend: str | None = None, *, recover: bool = True, **overrides: Any
) -> AsyncIterator[Orchestrator]:
    settings = _settings(backend=backend, **overrides)
    catalog = _catalog(settings)
    async with (
        SqlStore(settings.resolved_database_url) as store,
        create_backend(settings.backend, settings) as backend_impl,
        Orchestrator(settings, store, catalog, backend_impl, _progress) as orch,
    ):
        if recover:
            recovered = await orch.recover()
            if recovered:
                _progress(f"recovered {len(recovered)} interrupted attempt(s)")
        try:
            yield orch
        finally:
            await metrics.export_textfile(orch.store, settings.metrics_textfile)


async def _views(orch: Orchestrator, attempt_ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for attempt_id in attempt_ids:
        attempt = await orch.store.get_attempt(attempt_id)
        out.append(views.attempt_view(attempt, await orch.store.get_score(attempt_id)))
    return out


# --- the main job ----------------------------------------------------------------------


@app.command()
@command
async def demo(
    task: Annotated[str, typer.Option(help="Task to demonstrate.")] = DEMO_TASK,
    repeats: Annotated[int, typer.Option(min=1, help="Scorer repeats R.")] = 1,
    backend: Annotated[str, typer.Option(help="Backend: local (embedded default) or docker.")] = "local",
    as_json: JsonFlag = False,
) -> None:
    """The benchmark end to end on the embedded default: oracle and null agents on a tiny task."""
    async with orchestrator(backend) as orch:
        chosen = orch.catalog.task(task)
        _progress(
            f"demo: task {chosen.id} ({chosen.reference.manifest.summary}); agents oracle and null; "
            "the scorer times baseline, reference and both submissions"
        )
        attempts = await orch.run(chosen, ["oracle", "null"], repeats=repeats)
        rows = await _views(orch, [a.id for a in attempts])
    if as_json:
        views.print_json(rows)
    else:
        views.stdout.print(views.attempts_table(rows, title=f"Demo: {chosen.id}"))
        views.stdout.print(
            "FSR = (t_baseline - t_submission) / (t_baseline - t_reference): "
            "oracle should be near 1, null near 0."
        )


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
    async with orchestrator(backend, sandbox=sandbox) as orch:
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
        [row] = await _views(orch, [attempt.id])
    if as_json:
        views.print_json(row)
    else:
        views.stdout.print(views.attempts_table([row]))


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
    from orchestrator.batch import BatchSpec, run_batch

    spec = BatchSpec.load(path)
    if concurrency is not None:
        spec = spec.model_copy(update={"concurrency": concurrency})
    async with orchestrator(backend) as orch:
        attempt_ids = await run_batch(orch, spec, _progress)
        rows = await _views(orch, attempt_ids)
    if as_json:
        views.print_json(rows)
    else:
        views.stdout.print(views.attempts_table(rows, title=f"Batch {spec.name}"))


@app.command()
@command
async def score(
    path: Annotated[Path, typer.Argument(help="A script file, or a folder of editable files.")],
    task: Annotated[str, typer.Option(help="Task whose baseline and reference to time it against.")],
    repeats: Annotated[int | None, typer.Option(min=1, help="Scorer repeats R.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Score a submission from disk, standalone (no agent)."""
    async with orchestrator() as orch:
        chosen = orch.catalog.task(task)
        files = _read_submission(path, chosen.baseline.manifest.launch.script)
        attempt = await orch.store.create_attempt(
            task_id=chosen.id,
            agent="file",
            backend=orch.backend.name,
            config={"repeats": repeats, "source": str(path)},
            owner=orch.owner,
            ttl_s=orch.settings.lease_ttl_s,
        )
        await orch.store.transition(attempt.id, AttemptState.PENDING, AttemptState.ACTING)
        attempt = await orch.store.record_submission(attempt.id, files)
        await orch.score([attempt], repeats=repeats)
        [row] = await _views(orch, [attempt.id])
    if as_json:
        views.print_json(row)
    else:
        views.stdout.print(views.attempts_table([row]))


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
    if path.is_file():
        return {script: path.read_bytes()}
    if path.is_dir():
        return {
            p.relative_to(path).as_posix(): p.read_bytes()
            for p in sorted(path.rglob("*"))
            if p.is_file() and not p.is_symlink()
        }
    raise NotFound(f"{path}: no such file or folder")


# --- catalog ---------------------------------------------------------------------------


@tasks_app.command("list")
@command
async def tasks_list(
    track: Annotated[str | None, typer.Option(help="Only this track.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List tasks with their baseline and reference times."""
    catalog = _catalog(_settings())
    if track is not None:
        catalog.track(track)
    tasks = [t for t in catalog.tasks.values() if track is None or t.track == track]
    if as_json:
        views.print_json([views.task_view(t) for t in tasks])
    else:
        views.stdout.print(views.tasks_table(tasks))


@records_app.command("list")
@command
async def records_list(
    track: Annotated[str | None, typer.Option(help="Only this track.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List records."""
    catalog = _catalog(_settings())
    records = [r for r in catalog.records.values() if track is None or r.manifest.track == track]
    if as_json:
        views.print_json([views.record_view(r) for r in records])
    else:
        views.stdout.print(views.records_table(records))


@records_app.command("show")
@command
async def records_show(record_id: str, as_json: JsonFlag = False) -> None:
    """Show one record's manifest."""
    record = _catalog(_settings()).record(record_id)
    view = views.record_view(record)
    if as_json:
        views.print_json(view)
    else:
        for key, value in view.items():
            views.stdout.print(f"[bold]{key}[/bold]: {escape(str(value))}")


@data_app.command("synth")
@command
async def data_synth(
    track: Annotated[str, typer.Option(help="A track with synthetic data.")] = "tiny",
) -> None:
    """Generate (or verify) a track's synthetic corpus in the FineWeb shard format."""
    settings = _settings()
    data = ensure_track_data(_catalog(settings).track(track), settings.data_dir, _progress)
    views.print_json(data.__dict__)


# --- attempts --------------------------------------------------------------------------


@attempts_app.command("list")
@command
async def attempts_list(
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List attempts, newest first."""
    async with orchestrator(recover=False) as orch:
        attempts = await orch.store.list_attempts(task_id=task, limit=limit)
        rows = await _views(orch, [a.id for a in attempts])
    if as_json:
        views.print_json(rows)
    else:
        views.stdout.print(views.attempts_table(rows))


@attempts_app.command("show")
@command
async def attempts_show(attempt_id: str, as_json: JsonFlag = False) -> None:
    """One attempt: state, score, tool calls, experiments, workspace versions."""
    async with orchestrator(recover=False) as orch:
        store = orch.store
        attempt = await store.get_attempt(attempt_id)
        detail = {
            **views.attempt_view(attempt, await store.get_score(attempt_id)),
            "score": await store.get_score(attempt_id),
            "tool_calls": [c.model_dump() for c in await store.tool_calls(attempt_id)],
            "experiments": [e.model_dump() for e in await store.experiments(attempt_id)],
            "workspace_versions": [
                {"version": v.version, "parent": v.parent, "files": v.tree}
                for v in await store.workspace_versions(attempt_id)
            ],
            "agent": await store.get_agent_report(attempt_id),
        }
    if as_json:
        views.print_json(detail)
        return
    views.stdout.print(views.attempts_table([views.attempt_view(attempt, detail["score"])]))
    if attempt.reason:
        views.stdout.print(f"reason: {attempt.reason}", markup=False)
    for call in detail["tool_calls"]:
        err = f" {call['error']}" if call["error"] else ""
        views.stdout.print(f"  call {call['seq']:>3} {call['op']:<18} {call['status']}{err}", markup=False)
    views.stdout.print(
        f"{len(detail['experiments'])} experiment(s), "
        f"{len(detail['workspace_versions'])} workspace version(s)"
    )
    if detail["agent"] is not None:
        for line in views.agent_report_lines(detail["agent"]):
            views.stdout.print(line, markup=False)


@attempts_app.command("logs")
@command
async def attempts_logs(attempt_id: str) -> None:
    """Logs of an attempt: each experiment's and each scorer run's output tail."""
    async with orchestrator(recover=False) as orch:
        await orch.store.get_attempt(attempt_id)
        experiments = await orch.store.experiments(attempt_id)
        result = await orch.store.get_score(attempt_id) or {}
    for e in experiments:
        views.stdout.print(f"--- experiment {e.number} (workspace v{e.workspace_version}, {e.status})")
        views.stdout.print(e.result.get("log_tail", ""), markup=False)
    for run_ in result.get("runs", []):
        views.stdout.print(f"--- scorer run {run_['label']} ({run_['reason']})")
        views.stdout.print(run_.get("log_tail", ""), markup=False)
    if not experiments and not result.get("runs"):
        views.stdout.print("no logs recorded for this attempt")


@attempts_app.command("cancel")
@command
async def attempts_cancel(attempt_id: str, as_json: JsonFlag = False) -> None:
    """Cancel an active attempt."""
    async with orchestrator(recover=False) as orch:
        attempt = await orch.cancel(attempt_id)
        row = views.attempt_view(attempt, None)
    if as_json:
        views.print_json(row)
    else:
        views.stdout.print(f"cancelled {attempt_id}")


@attempts_app.command("resume")
@command
async def attempts_resume(as_json: JsonFlag = False) -> None:
    """Recover attempts whose orchestrator died: score stored submissions, fail the rest."""
    async with orchestrator(recover=False) as orch:
        recovered = await orch.recover()
        rows = await _views(orch, [a.id for a in recovered])
    if as_json:
        views.print_json(rows)
    else:
        views.stdout.print(views.attempts_table(rows, title="Recovered attempts"))


@app.command()
@command
async def cleanup(
    backend: Annotated[str | None, typer.Option(help="Backend (default from settings: local).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Remove processes, containers or pods that crashed attempts left behind."""
    async with orchestrator(backend, recover=False) as orch:
        removed = await orch.backend.cleanup(await orch.live_ids())
        metrics.leaked_resources_removed(orch.backend.name, len(removed))
    if as_json:
        views.print_json(removed)
    else:
        for item in removed:
            views.stdout.print(f"removed {item}", markup=False)
        views.stdout.print(f"{len(removed)} leftover resource(s) removed")


catalog_commands.register(tasks_app, records_app, data_app, command=command, progress=_progress)
hints_cli.register(app, command, _settings)
app.command()(command(serve_cli.serve))
app.command()(command(report_cli.report))


def main() -> None:
    from orchestrator.cli.images import images_app

    app.add_typer(images_app, name="images")
    app(prog_name="speedrun")


if __name__ == "__main__":
    sys.exit(main())
