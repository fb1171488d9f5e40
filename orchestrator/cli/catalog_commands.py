"""Catalog commands that touch the network or the data: `records fetch`, `data fetch`,
`data verify`, and `tasks show`. Registered on main's command groups by ``register``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import typer
from rich.markup import escape

from orchestrator.catalog import fineweb
from orchestrator.catalog.catalog import Catalog, Record, Task
from orchestrator.catalog.fetch import fetch_record
from orchestrator.catalog.hints import find_pack
from orchestrator.catalog.manifest import FinewebData, GitSource
from orchestrator.cli import views
from orchestrator.domain import Progress
from orchestrator.errors import DataFormatError, UsageError
from orchestrator.settings import Settings

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Command = Callable[[Callable[..., Coroutine[Any, Any, None]]], Callable[..., None]]


def _catalog(settings: Settings) -> Catalog:
    return Catalog.load(settings.records_dir, settings.records_cache_dir)


def _fineweb_track(catalog: Catalog, track_id: str) -> FinewebData:
    spec = catalog.track(track_id).manifest.data
    if not isinstance(spec, FinewebData):
        raise UsageError(f"track {track_id} uses generated data: `speedrun data synth --track {track_id}`")
    return spec


def _shards_needed(catalog: Catalog, track_id: str) -> int | None:
    needs = [r.manifest.data.train_shards for r in catalog.track(track_id).records]
    known = [n for n in needs if n is not None]
    return max(known) if known else None


def _records_to_fetch(catalog: Catalog, record_ids: list[str], track: str | None) -> list[Record]:
    if record_ids:
        return [catalog.record(r) for r in record_ids]
    if track is not None:
        catalog.track(track)
    return [
        r
        for r in catalog.records.values()
        if isinstance(r.manifest.source, GitSource) and (track is None or r.manifest.track == track)
    ]


def task_detail(task: Task, settings: Settings, catalog: Catalog) -> dict[str, Any]:
    """Everything needed to run a task: files, hints, images, data."""
    pack = find_pack(settings.hints_dir, task.track, task.id)
    data_spec = catalog.track(task.track).manifest.data
    base, ref = task.baseline.manifest, task.reference.manifest
    return {
        **views.task_view(task),
        "files": base.files,
        "files_available": task.baseline.is_available,
        "reference_available": task.reference.is_available,
        "launch": base.launch.model_dump(),
        "protected_hyperparameters": base.protected.hyperparameters,
        "image": base.environment.model_dump(),
        "reference_image": ref.environment.model_dump(),
        "data": {**data_spec.model_dump(), **base.data.model_dump()},
        "hints": None
        if pack is None
        else {
            "levels": list(pack.levels),
            "knowledge": [p.relative_to(pack.root).as_posix() for p in pack.knowledge],
            "provenance": pack.manifest.provenance,
            "license": pack.manifest.license,
            "path": str(pack.root),
        },
    }


def register(
    tasks_app: typer.Typer,
    records_app: typer.Typer,
    data_app: typer.Typer,
    *,
    command: Command,
    progress: Progress,
) -> None:
    """Add this module's commands to main's groups (``command`` turns errors into exit codes)."""

    @tasks_app.command("show")
    @command
    async def tasks_show(task_id: str, as_json: JsonFlag = False) -> None:
        """One task: files, launch, hints available, images and data needs."""
        settings = Settings()
        catalog = _catalog(settings)
        detail = task_detail(catalog.task(task_id), settings, catalog)
        if as_json:
            views.print_json(detail)
            return
        for key, value in detail.items():
            views.stdout.print(f"[bold]{key}[/bold]: {escape(str(value))}")

    @records_app.command("fetch")
    @command
    async def records_fetch(
        record_ids: Annotated[
            list[str] | None, typer.Argument(help="Records (default: every git-sourced one).")
        ] = None,
        track: Annotated[str | None, typer.Option(help="Only this track.")] = None,
        lock: Annotated[
            bool, typer.Option("--lock", help="Pin the sha256 of records that have none into their manifest.")
        ] = False,
        as_json: JsonFlag = False,
    ) -> None:
        """Download the pinned record scripts into the cache, verifying each sha256."""
        settings = Settings()
        catalog = _catalog(settings)
        results = [
            fetch_record(record, base_url=settings.records_source_url, lock=lock, progress=progress)
            for record in _records_to_fetch(catalog, record_ids or [], track)
        ]
        rows = [{**r.__dict__, "script": str(r.script) if r.script else None} for r in results]
        if as_json:
            views.print_json(rows)
            return
        counts: dict[str, int] = {}
        for r in results:
            counts[r.status] = counts.get(r.status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        views.stdout.print(summary or "nothing to fetch")

    @data_app.command("fetch")
    @command
    async def data_fetch(
        shards: Annotated[
            int | None, typer.Option(min=1, help="Train shards 1..N (default: what the track needs).")
        ] = None,
        track: Annotated[str, typer.Option(help="A track with FineWeb data.")] = "nanogpt",
        as_json: JsonFlag = False,
    ) -> None:
        """Download FineWeb shards (resumable), verifying each shard's header and size."""
        settings = Settings()
        catalog = _catalog(settings)
        spec = _fineweb_track(catalog, track)
        count = shards or _shards_needed(catalog, track)
        if count is None:
            raise UsageError(f"track {track} does not say how many shards it needs; pass --shards N")
        root = fineweb.dataset_dir(settings.data_dir, spec)
        checks = fineweb.fetch_shards(spec, root, count, progress=progress)
        if as_json:
            views.print_json({"path": str(root), "shards": fineweb.as_dicts(checks)})
        else:
            tokens = sum(c.tokens or 0 for c in checks)
            views.stdout.print(f"{len(checks)} shard(s), {tokens:,} tokens, verified in {root}", markup=False)

    @data_app.command("verify")
    @command
    async def data_verify(
        shards: Annotated[int | None, typer.Option(min=1, help="Also require train shards 1..N.")] = None,
        track: Annotated[str, typer.Option(help="A track with FineWeb data.")] = "nanogpt",
        as_json: JsonFlag = False,
    ) -> None:
        """Check every fetched shard's header and size; exit 2 naming each bad one."""
        settings = Settings()
        spec = _fineweb_track(_catalog(settings), track)
        root = fineweb.dataset_dir(settings.data_dir, spec)
        checks = fineweb.verify_shards(spec, root, shards)
        if as_json:
            views.print_json({"path": str(root), "shards": fineweb.as_dicts(checks)})
        else:
            for c in checks:
                state = "ok" if c.ok else f"BAD: {c.problem}"
                views.stdout.print(f"{c.name}: {state}", markup=False)
        bad = fineweb.problems(checks)
        if bad:
            raise DataFormatError(f"{len(bad)} of {len(checks)} shard(s) in {root} failed: " + "; ".join(bad))
