"""The GPU mini track's scripts: a CPU smoke run of each (NANOGPT_SMOKE), a GPU check where there is one."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from orchestrator.catalog.manifest import RecordManifest
from orchestrator.catalog.synth import SynthSpec, generate_corpus
from tests.support.torchrun import torchrun

REPO = Path(__file__).resolve().parents[2]
RECORDS = sorted((REPO / "records" / "gpu_mini").glob("r*/"))
PROGRESS = re.compile(r"^step:(\d+)/(\d+) val_loss:(\d+\.\d{4}) train_time:(\d+)ms step_avg:(\d+\.\d{2})ms$")


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gpu-mini-corpus")
    generate_corpus(
        root, SynthSpec(vocab_size=2048, tokens_per_shard=20_000, train_shards=1, val_tokens=4_000)
    )
    return root


def _run(record: Path, corpus: Path, nproc: int, extra: dict[str, str]) -> list[str]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "NANOGPT_TRAIN_FILES": str(corpus / "train_*.bin"),
        "NANOGPT_VAL_FILES": str(corpus / "val_000000.bin"),
        "NANOGPT_VAL_TOKENS": "2048",
        "NANOGPT_SEED": "1",
        "NANOGPT_NUM_ITERATIONS": "3",
        **extra,
    }
    stdout = torchrun(record, nproc, env, 300)
    return [line for line in stdout.splitlines() if line.startswith("step:")]


def test_manifests_share_a_target_and_need_gpus() -> None:
    import tomllib

    manifests = [
        RecordManifest.model_validate(tomllib.loads((r / "record.toml").read_text())) for r in RECORDS
    ]
    assert [m.index for m in manifests] == [1, 2, 3]
    assert len({m.target_val_loss for m in manifests}) == 1
    assert all(m.launch.device == "cuda" for m in manifests)
    times = [m.published_train_seconds for m in manifests]
    assert times == sorted(times, reverse=True), "each record must be faster than the one before"


@pytest.mark.slow
@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.name)
def test_smoke_on_cpu(record: Path, corpus: Path) -> None:
    lines = _run(record, corpus, 2 if record.name == "r1" else 1, {"NANOGPT_SMOKE": "1"})
    assert [PROGRESS.match(line) is not None for line in lines] == [True, True]
    assert lines[-1].startswith("step:3/3 ")


@pytest.mark.skipif(
    not _has_cuda(), reason="needs a CUDA GPU (CI has none; benchmarks/gpu_suite.py runs these on one)"
)
@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.name)
def test_compiled_run_on_a_gpu(record: Path, corpus: Path) -> None:
    lines = _run(record, corpus, 1, {"NANOGPT_VAL_TOKENS": "131072", "NANOGPT_NUM_ITERATIONS": "20"})
    assert PROGRESS.match(lines[-1]) and lines[-1].startswith("step:20/20 ")
