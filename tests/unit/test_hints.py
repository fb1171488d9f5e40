"""Hint packs: the schema, the loader and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.catalog.hints import find_pack, load_pack
from orchestrator.errors import ManifestError, NotFound

PACK_TOML = 'schema = 1\ntask = "tiny-r1-r2"\nprovenance = "written by the team"\nlicense = "CC-BY-4.0"\n'


def _pack(root: Path, toml: str = PACK_TOML, levels: tuple[int, ...] = (2,)) -> Path:
    pack = root / "tiny" / "tiny-r1-r2"
    pack.mkdir(parents=True)
    (pack / "pack.toml").write_text(toml)
    for level in levels:
        (pack / f"level_{level}.md").write_text(f"level {level} text")
    return pack


def test_loads_levels_and_knowledge(tmp_path: Path) -> None:
    pack_dir = _pack(tmp_path, levels=(1, 3))
    (pack_dir / "knowledge").mkdir()
    (pack_dir / "knowledge" / "rope.md").write_text("background")
    pack = find_pack(tmp_path, "tiny", "tiny-r1-r2")
    assert pack is not None
    assert pack.levels == (1, 3) and pack.text(3) == "level 3 text"
    assert [p.name for p in pack.knowledge] == ["rope.md"]
    assert pack.manifest.license == "CC-BY-4.0"
    with pytest.raises(NotFound, match="no level 2"):
        pack.text(2)


def test_missing_pack_is_none(tmp_path: Path) -> None:
    assert find_pack(tmp_path, "tiny", "tiny-r1-r2") is None


@pytest.mark.parametrize(
    ("toml", "levels", "message"),
    [
        (PACK_TOML.replace('license = "CC-BY-4.0"\n', ""), (2,), "license"),
        (PACK_TOML.replace("tiny-r1-r2", "tiny-r2-r3"), (2,), "differs from its folder name"),
        (PACK_TOML + "colour = 1\n", (2,), "colour"),
        ("schema = [", (2,), "not valid TOML"),
        (PACK_TOML.replace("schema = 1", "schema = 2"), (2,), "unsupported hint pack schema 2"),
        (PACK_TOML, (), "has none of level_1.md"),
    ],
)
def test_malformed_pack_names_file_and_problem(
    tmp_path: Path, toml: str, levels: tuple[int, ...], message: str
) -> None:
    pack_dir = _pack(tmp_path, toml, levels)
    with pytest.raises(ManifestError, match=message) as info:
        load_pack(pack_dir)
    assert str(pack_dir) in str(info.value)


def test_folder_without_manifest_is_not_a_pack(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a hint pack"):
        load_pack(tmp_path)
