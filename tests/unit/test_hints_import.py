"""`speedrun hints import` (must show 4): the upstream layout round-trips file for file, and a
missing or malformed pack is a clear error that writes nothing.

The round trip reads the upstream data at ../shared/reference/upstream-hints (relative to
the repository root) into a temporary folder and skips where that folder is absent; none
of its text is ever written inside the repository. Malformed inputs are built here from
our own placeholder text.
"""

from __future__ import annotations

import filecmp
import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from orchestrator.catalog.hints import find_pack, load_pack
from tests.conftest import REPO

UPSTREAM = REPO.parent / "shared" / "reference" / "upstream-hints"
Cli = Callable[..., CompletedProcess[str]]


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.skipif(not UPSTREAM.is_dir(), reason=f"upstream hint data not present at {UPSTREAM}")
def test_upstream_round_trips_every_file(cli: Cli, tmp_path: Path) -> None:
    out, back = tmp_path / "hints", tmp_path / "back"
    result = cli("hints", "import", str(UPSTREAM), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout)
    records = sorted(p.name for p in UPSTREAM.iterdir() if p.is_dir())
    assert len(imported["packs"]) == len(records) and imported["skipped"] == []

    for folder in records:
        n = int(folder.removeprefix("record_"))
        pack = find_pack(out, "nanogpt", f"nanogpt-r{n}-r{n + 1}")
        assert pack is not None and pack.levels == (1, 2, 3)
        extras = sorted(p.name for p in (UPSTREAM / folder).glob("level_9_*.txt"))
        assert sorted(p.name for p in pack.knowledge) == extras, "level 9 extras become knowledge files"
        for ours, theirs in pack.manifest.upstream.items():
            assert (pack.root / ours).read_bytes() == (UPSTREAM / theirs).read_bytes()
    loose = {p.name for p in UPSTREAM.iterdir() if p.is_file()}
    assert {p.name for p in (out / "nanogpt" / "knowledge").iterdir()} == loose

    exported = cli("hints", "export", str(back), "--source", str(out))
    assert exported.returncode == 0, exported.stderr
    assert _files(back) == _files(UPSTREAM)
    mismatched = [f for f in _files(UPSTREAM) if not filecmp.cmp(UPSTREAM / f, back / f, shallow=False)]
    assert mismatched == []

    again = cli("hints", "import", str(UPSTREAM), "--out", str(out))
    assert again.returncode == 2 and "exists already; pass --force" in again.stderr
    assert cli("hints", "import", str(UPSTREAM), "--out", str(out), "--force").returncode == 0


def _upstream(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


GOOD = {
    "record_1/level_1_pseudo.txt": b"placeholder pseudocode\n",
    "record_1/level_2_description.txt": b"placeholder description\n",
    "record_1/level_0_diff.txt": b"placeholder diff\n",
    "record_2/level_3_paper.txt": b"placeholder paper\n",
    "record_2/level_9_extra.txt": b"placeholder background\n",
    "notes.md": b"placeholder notes\n",
}

BAD = {
    "no record folders": ({"notes.md": b"x"}, "no record_<N> folders"),
    "stray folder": ({**GOOD, "recordings/level_1_x.txt": b"x"}, "expected record_<N> folders"),
    "stray file": ({**GOOD, "record_1/readme.txt": b"x"}, "record_1/readme.txt: not in the upstream layout"),
    "unknown level": ({**GOOD, "record_1/level_5_x.txt": b"x"}, "unknown hint level 5"),
    "two of a level": ({**GOOD, "record_1/level_1_again.txt": b"x"}, "two files of level 1"),
    "no hint level": ({"record_4/level_9_only.txt": b"x"}, "record_4: no hint of level 1, 2 or 3"),
    "not text": ({**GOOD, "record_2/level_1_bin.txt": b"\xff\xfe\x00"}, "level_1_bin.txt: not UTF-8 text"),
}


def test_import_maps_levels_knowledge_and_skips_level_0(cli: Cli, tmp_path: Path) -> None:
    src = _upstream(tmp_path / "up", GOOD)
    out = tmp_path / "out"
    result = cli("hints", "import", str(src), "--out", str(out), "--track", "tiny")
    assert result.returncode == 0, result.stderr
    assert "level 0 (code diffs) is not a hint level here" in result.stdout
    first = load_pack(out / "tiny" / "tiny-r1-r2")
    assert first.levels == (1, 2) and first.text(2) == "placeholder description\n"
    second = load_pack(out / "tiny" / "tiny-r2-r3")
    assert second.levels == (3,) and [p.name for p in second.knowledge] == ["level_9_extra.txt"]
    assert (out / "tiny" / "knowledge" / "notes.md").read_bytes() == b"placeholder notes\n"


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_upstream_is_a_clear_error_and_writes_nothing(cli: Cli, tmp_path: Path, case: str) -> None:
    files, message = BAD[case]
    src = _upstream(tmp_path / "up", files)
    out = tmp_path / "out"
    result = cli("hints", "import", str(src), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_missing_source_and_malformed_pack(cli: Cli, tmp_path: Path) -> None:
    result = cli("hints", "import", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "no such folder" in result.stderr
    pack = tmp_path / "hints" / "nanogpt" / "nanogpt-r1-r2"
    pack.mkdir(parents=True)
    (pack / "pack.toml").write_text('schema = 1\ntask = "nanogpt-r1-r2"\n')
    (pack / "level_1.md").write_text("placeholder\n")
    result = cli("hints", "export", str(tmp_path / "back"), "--source", str(tmp_path / "hints"))
    assert result.returncode == 2
    assert "invalid hint pack" in result.stderr and "provenance" in result.stderr
