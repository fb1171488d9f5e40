"""Benchmarks stay runnable (their figures are read from their output, not asserted here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_scorer_overhead_benchmark_runs(speedrun_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/scorer_overhead.py",
            "--task",
            "toy-r1-r2",
            "--pairs",
            "1",
            "--out",
            str(out),
        ],
        cwd=REPO,
        env={**os.environ, **speedrun_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["record"] == "toy-r1" and len(summary["pairs"]) == 1
    assert summary["pairs"][0]["scored_s"] > 0 and summary["pairs"][0]["bare_s"] > 0
