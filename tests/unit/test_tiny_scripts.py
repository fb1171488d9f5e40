"""The tiny track's training scripts: real torchrun launches for a few steps each."""

from __future__ import annotations

import ast
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest

from orchestrator.catalog.manifest import RecordManifest
from orchestrator.catalog.synth import SynthSpec, generate_corpus
from tests.support.torchrun import torchrun

REPO = Path(__file__).resolve().parents[2]
RECORDS = sorted((REPO / "records" / "tiny").glob("r*/"))
PROGRESS = re.compile(r"^step:(\d+)/(\d+) val_loss:(\d+\.\d{4}) train_time:(\d+)ms step_avg:(\d+\.\d{2})ms$")
ALLOWED_IMPORTS = {"torch", "numpy", *sys.stdlib_module_names}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-corpus")
    generate_corpus(root, SynthSpec(tokens_per_shard=20_000, train_shards=1, val_tokens=4_000))
    return root


def _launch(record: Path, corpus: Path, nproc: int, iterations: int) -> list[str]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "NANOGPT_TRAIN_FILES": str(corpus / "train_*.bin"),
        "NANOGPT_VAL_FILES": str(corpus / "val_000000.bin"),
        "NANOGPT_VAL_TOKENS": "1024",
        "NANOGPT_SEED": "1",
        "NANOGPT_NUM_ITERATIONS": str(iterations),
    }
    return torchrun(record, nproc, env, 120).splitlines()


def test_there_are_four_records() -> None:
    assert [p.name for p in RECORDS] == ["r1", "r2", "r3", "r4"]


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.name)
def test_manifest_is_consistent(record: Path) -> None:
    raw = tomllib.loads((record / "record.toml").read_text())
    manifest = RecordManifest.model_validate(raw)
    assert manifest.track == "tiny" and manifest.index == int(record.name[1:])
    targets = {tomllib.loads((r / "record.toml").read_text())["target_val_loss"] for r in RECORDS}
    assert targets == {manifest.target_val_loss}
    source = (record / "train_gpt.py").read_text()
    assert f'"NANOGPT_NUM_ITERATIONS", "{manifest.published_steps}"' in source
    assert manifest.data.train_shards == SynthSpec().train_shards
    assert manifest.data.val_tokens < SynthSpec().val_tokens


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.name)
def test_manifest_is_calibrated(record: Path) -> None:
    manifest = RecordManifest.model_validate(tomllib.loads((record / "record.toml").read_text()))
    assert manifest.published_val_loss is not None
    assert manifest.published_val_loss < manifest.target_val_loss


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.name)
def test_script_imports_only_torch_numpy_and_stdlib(record: Path) -> None:
    tree = ast.parse((record / "train_gpt.py").read_text())
    roots = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert roots <= ALLOWED_IMPORTS, roots - ALLOWED_IMPORTS


@pytest.mark.slow
@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.name)
def test_script_trains_and_prints_progress_lines(record: Path, corpus: Path) -> None:
    lines = [m for line in _launch(record, corpus, 1, 3) if (m := PROGRESS.match(line))]
    assert [(int(m[1]), int(m[2])) for m in lines] == [(0, 3), (3, 3)]
    assert int(lines[0][4]) == 0 < int(lines[1][4])
    initial, final = float(lines[0][3]), float(lines[1][3])
    assert 5.5 < initial < 7.0  # an untrained model sits near ln(512) = 6.24
    assert 2.0 < final < initial + 0.05  # three steps train (r4 fast, r1 barely, in warmup)


@pytest.mark.slow
def test_two_ranks_agree_with_the_interface(corpus: Path) -> None:
    """WORLD_SIZE > 1 switches to gloo; only rank 0 prints."""
    lines = [m for line in _launch(RECORDS[-1], corpus, 2, 2) if (m := PROGRESS.match(line))]
    assert [(int(m[1]), int(m[2])) for m in lines] == [(0, 2), (2, 2)]
