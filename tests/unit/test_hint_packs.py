"""The team's hint packs: one for every upstream task, each loads, none shares text with upstream."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from orchestrator.catalog.catalog import Catalog
from orchestrator.catalog.hints import find_pack, load_pack
from tests.conftest import REPO

HINTS = REPO / "hints"
SHINGLE = 12
UPSTREAM_HINTS = Path(
    os.environ.get("SPEEDRUN_UPSTREAM_HINTS", REPO.parent / "shared" / "reference" / "upstream-hints")
)


def _nanogpt_tasks() -> list[str]:
    catalog = Catalog.load(REPO / "records", Path("/nonexistent"))
    return [t.id for t in catalog.tasks.values() if t.track == "nanogpt"]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def _our_texts() -> dict[Path, str]:
    return {
        p: p.read_text(encoding="utf-8") for p in sorted(HINTS.rglob("*")) if p.suffix in (".md", ".toml")
    }


def test_every_upstream_task_has_a_pack_of_ours_that_loads() -> None:
    tasks = _nanogpt_tasks()
    assert len(tasks) == 19
    for task_id in tasks:
        pack = find_pack(HINTS, "nanogpt", task_id)
        assert pack is not None, f"no hint pack for {task_id}"
        assert 2 in pack.levels, f"{task_id}: no level 2 description"
        assert len(_words(pack.text(2))) >= 60, f"{task_id}: level 2 is too thin"
        assert pack.manifest.provenance.strip() and pack.manifest.license == "Apache-2.0"


def test_every_pack_folder_is_a_valid_pack() -> None:
    folders = [p.parent for p in HINTS.rglob("pack.toml")]
    assert folders
    for folder in folders:
        load_pack(folder)  # raises ManifestError on anything malformed


def test_the_overlap_check_catches_a_copied_sentence() -> None:
    copied = "one two three four five six seven eight nine ten eleven twelve thirteen"
    assert _shingles("Intro. " + copied.upper() + "!") & _shingles(copied)
    assert not _shingles("one two three four five six seven eight nine ten eleven") & _shingles(copied)


@pytest.mark.skipif(not UPSTREAM_HINTS.is_dir(), reason=f"no upstream hint files at {UPSTREAM_HINTS}")
def test_no_twelve_word_run_of_ours_appears_in_upstream_hints() -> None:
    upstream: set[tuple[str, ...]] = set()
    files = [p for p in UPSTREAM_HINTS.rglob("*") if p.is_file()]
    assert files, "the upstream hint folder is empty"
    for path in files:
        upstream |= _shingles(path.read_text(encoding="utf-8", errors="replace"))
    shared = {
        str(path.relative_to(REPO)): sorted(" ".join(s) for s in _shingles(text) & upstream)
        for path, text in _our_texts().items()
    }
    offenders = {name: runs for name, runs in shared.items() if runs}
    assert not offenders, f"text shared with upstream hints: {offenders}"
