"""What an agent is told besides the goal: the task's hint at a chosen level, and knowledge files.

Resolved when an attempt is created (so a missing pack or file is a usage error before
anything runs) and read when the agent starts.
"""

from __future__ import annotations

import glob
from pathlib import Path

from orchestrator.catalog.catalog import Task
from orchestrator.catalog.hints import LEVELS, find_pack
from orchestrator.errors import ManifestError, NotFound, UsageError

MAX_KNOWLEDGE_BYTES = 2 * 1024 * 1024  # all knowledge files of one brief together


def hint_files(hints_dir: Path, task: Task, level: int) -> list[Path]:
    """The task's hint file of ``level`` and its pack's knowledge files.

    Raises:
        UsageError: a level outside 1-3.
        NotFound: the task has no hint pack, or its pack lacks the level.
        ManifestError: the pack is malformed.
    """
    if level not in LEVELS:
        raise UsageError(f"hint level {level} does not exist; levels are {', '.join(map(str, LEVELS))}")
    pack = find_pack(hints_dir, task.track, task.id)
    if pack is None:
        raise NotFound(
            f"no hint pack for task {task.id} (looked for {hints_dir / task.track / task.id}); "
            "import one with `speedrun hints import` or run without --hints"
        )
    pack.text(level)  # raises NotFound naming the levels the pack has
    return [pack.root / f"level_{level}.md", *pack.knowledge]


def knowledge_files(patterns: list[str]) -> list[Path]:
    """Files named by paths or glob patterns, in order, each once.

    Raises: NotFound for a pattern that matches no file.
    """
    out: list[Path] = []
    for pattern in patterns:
        matches = sorted(Path(m) for m in glob.glob(pattern, recursive=True) if Path(m).is_file())
        if not matches:
            raise NotFound(f"--knowledge {pattern}: no such file")
        out += [m.resolve() for m in matches if m.resolve() not in out]
    return out


def read_texts(paths: list[str]) -> dict[str, str]:
    """Name -> text for the brief; names are the file names, made unique when they clash.

    Raises: ManifestError for a file that is not UTF-8 text, or too much text in all.
    """
    out: dict[str, str] = {}
    total = 0
    for raw in paths:
        path = Path(raw)
        try:
            data = path.read_bytes()
            text = data.decode("utf-8")
        except FileNotFoundError:
            raise NotFound(f"knowledge file {path} is gone") from None
        except UnicodeDecodeError as e:
            raise ManifestError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        total += len(data)
        if total > MAX_KNOWLEDGE_BYTES:
            raise ManifestError(f"knowledge files exceed {MAX_KNOWLEDGE_BYTES} bytes together")
        name = path.name
        n = 2
        while name in out:
            name, n = f"{path.name} ({n})", n + 1
        out[name] = text
    return out
