"""Import hint packs from the upstream benchmark's layout into ours, and export them back.

Upstream (one folder per track):

    record_N/level_1_*.txt   pseudocode of the change from record N to N+1
    record_N/level_2_*.txt   prose description
    record_N/level_3_*.txt   mini-paper
    record_N/level_9_*.txt   extra background
    *.md (and other loose files)   background documents for the whole track

Ours (orchestrator/catalog/hints.py): ``<out>/<track>/<track>-rN-rN+1/`` with
``pack.toml``, ``level_L.md`` and ``knowledge/``; the loose files go to
``<out>/<track>/knowledge/``. Texts are copied byte for byte and each pack records
where every file came from, so ``export_upstream`` rebuilds the upstream tree exactly.
Level 0 (upstream's code diffs) is not a hint level here and is skipped, with a note.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.catalog.hints import LEVELS, PACK_FILE, load_pack
from orchestrator.errors import ManifestError, NotFound, UsageError

_RECORD = re.compile(r"record_(\d+)")
_LEVEL = re.compile(r"level_(\d+)_[A-Za-z0-9_.-]+\.txt")
KNOWLEDGE_LEVEL = 9
SKIPPED_LEVELS = (0,)
TRACK_KNOWLEDGE = "knowledge"


@dataclass
class ImportResult:
    packs: list[Path] = field(default_factory=list)
    track_knowledge: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Upstream files not imported, with the reason."""


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_text(path: Path) -> bytes:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return data


def _plan_record(folder: Path, skipped: list[str]) -> dict[str, Path]:
    """Our file name (relative to the pack) -> upstream file, for one record_N folder."""
    plan: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        match = _LEVEL.fullmatch(path.name)
        if not path.is_file() or match is None:
            raise ManifestError(
                f"{path}: not in the upstream layout (expected files named level_<L>_<name>.txt)"
            )
        level = int(match.group(1))
        if level in SKIPPED_LEVELS:
            skipped.append(f"{path}: level {level} (code diffs) is not a hint level here")
            continue
        if level == KNOWLEDGE_LEVEL:
            plan[f"knowledge/{path.name}"] = path
        elif level in LEVELS:
            ours = f"level_{level}.md"
            if ours in plan:
                raise ManifestError(
                    f"{folder}: two files of level {level}: {plan[ours].name} and {path.name}"
                )
            plan[ours] = path
        else:
            raise ManifestError(f"{path}: unknown hint level {level} (known: 1, 2, 3, and 9 for background)")
    if not any(name.startswith("level_") for name in plan):
        raise ManifestError(f"{folder}: no hint of level 1, 2 or 3")
    return plan


def import_upstream(
    source: Path, out: Path, *, track: str = "nanogpt", license: str = "CC-BY-NC-4.0", force: bool = False
) -> ImportResult:
    """Convert an upstream hints folder into packs under ``out/track``.

    Raises:
        NotFound: ``source`` is not a folder.
        ManifestError: the folder is not in the upstream layout (the message names the file).
        UsageError: a pack exists already at the destination and ``force`` is off.
    """
    if not source.is_dir():
        raise NotFound(f"{source}: no such folder")
    result = ImportResult()
    records: dict[int, dict[str, Path]] = {}
    loose: list[Path] = []
    for entry in sorted(source.iterdir()):
        match = _RECORD.fullmatch(entry.name)
        if entry.is_dir() and match:
            records[int(match.group(1))] = _plan_record(entry, result.skipped)
        elif entry.is_dir():
            raise ManifestError(f"{entry}: not in the upstream layout (expected record_<N> folders)")
        elif entry.is_file():
            loose.append(entry)
    if not records:
        raise ManifestError(f"{source}: no record_<N> folders; not an upstream hints folder")
    # every text is checked before anything is written, so bad input leaves nothing behind
    for path in [*loose, *(p for plan in records.values() for p in plan.values())]:
        _check_text(path)

    track_dir = out / track
    targets = {n: track_dir / f"{track}-r{n}-r{n + 1}" for n in records}
    existing = [t for t in [*targets.values(), track_dir / TRACK_KNOWLEDGE] if t.exists()]
    if existing and not force:
        raise UsageError(f"{existing[0]} exists already; pass --force to replace imported packs")
    track_dir.mkdir(parents=True, exist_ok=True)
    provenance = f"imported with `speedrun hints import` from the upstream layout at {source.resolve()}"
    for n, plan in sorted(records.items()):
        task = targets[n].name
        staging = Path(tempfile.mkdtemp(prefix=f".{task}.", dir=track_dir))
        for ours, theirs in plan.items():
            (staging / ours).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(theirs, staging / ours)
        mapping = {ours: f"record_{n}/{theirs.name}" for ours, theirs in plan.items()}
        lines = [
            "schema = 1",
            f"task = {_toml_str(task)}",
            f"provenance = {_toml_str(provenance)}",
            f"license = {_toml_str(license)}",
            "",
            "[upstream]",
            *(f"{_toml_str(k)} = {_toml_str(v)}" for k, v in sorted(mapping.items())),
        ]
        (staging / PACK_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        if targets[n].exists():
            shutil.rmtree(targets[n])
        staging.rename(targets[n])
        load_pack(targets[n])  # what we wrote must load
        result.packs.append(targets[n])
    if loose:
        knowledge = track_dir / TRACK_KNOWLEDGE
        knowledge.mkdir(exist_ok=True)
        for path in loose:
            shutil.copyfile(path, knowledge / path.name)
            result.track_knowledge.append(knowledge / path.name)
    return result


def export_upstream(track_dir: Path, dest: Path) -> list[Path]:
    """Rebuild the upstream layout from imported packs (the inverse of ``import_upstream``).

    Raises: ManifestError for a malformed pack; NotFound when ``track_dir`` holds no pack.
    """
    written: list[Path] = []
    packs = sorted(
        p
        for p in track_dir.iterdir()
        if p.is_dir() and p.name != TRACK_KNOWLEDGE and not p.name.startswith(".")
    )
    if not packs:
        raise NotFound(f"{track_dir}: no hint packs")
    for root in packs:
        pack = load_pack(root)
        if not pack.manifest.upstream:
            raise ManifestError(f"{root / PACK_FILE}: not an imported pack (no [upstream] table)")
        for ours, theirs in pack.manifest.upstream.items():
            target = dest / theirs
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / ours, target)
            written.append(target)
    knowledge = track_dir / TRACK_KNOWLEDGE
    if knowledge.is_dir():
        for path in sorted(knowledge.iterdir()):
            shutil.copyfile(path, dest / path.name)
            written.append(dest / path.name)
    return written
