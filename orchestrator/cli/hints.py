"""``speedrun hints import|export``: hint packs from the upstream layout, and back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.catalog.hints_import import export_upstream, import_upstream
from orchestrator.cli import views
from orchestrator.cli.common import JsonFlag, command, group, load_settings

app = group("Hint packs: import the upstream layout into ours.")


@app.command("import")
@command
async def hints_import(
    source: Annotated[Path, typer.Argument(help="Upstream folder: record_N/level_L_*.txt, loose .md files.")],
    out: Annotated[
        Path | None, typer.Option(help="Hints root to write (default: settings hints_dir).")
    ] = None,
    track: Annotated[str, typer.Option(help="Track the records belong to.")] = "nanogpt",
    license: Annotated[str, typer.Option(help="SPDX license of the imported text.")] = "CC-BY-NC-4.0",
    force: Annotated[bool, typer.Option(help="Replace packs imported before.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Import upstream hint packs: one pack per record N (task <track>-rN-rN+1)."""
    root = out or load_settings().hints_dir
    result = import_upstream(source, root, track=track, license=license, force=force)
    if as_json:
        views.print_json(
            {
                "packs": [str(p) for p in result.packs],
                "track_knowledge": [str(p) for p in result.track_knowledge],
                "skipped": result.skipped,
            }
        )
        return
    for note in result.skipped:
        views.stdout.print(f"skipped {note}", markup=False)
    views.stdout.print(
        f"imported {len(result.packs)} pack(s) and {len(result.track_knowledge)} background file(s) "
        f"into {root / track}",
        markup=False,
    )


@app.command("export")
@command
async def hints_export(
    dest: Annotated[Path, typer.Argument(help="Folder to write the upstream layout into.")],
    source: Annotated[Path | None, typer.Option(help="Hints root (default: settings hints_dir).")] = None,
    track: Annotated[str, typer.Option(help="Track to export.")] = "nanogpt",
) -> None:
    """Write imported packs back in the upstream layout."""
    written = export_upstream((source or load_settings().hints_dir) / track, dest)
    views.stdout.print(f"wrote {len(written)} file(s) into {dest}", markup=False)
