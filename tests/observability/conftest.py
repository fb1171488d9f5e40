"""The observability tests run real batches on a copy of the toy track with slower steps.

Slower steps widen the baseline-reference gap of toy-r1-r2 (6 s vs 1.5 s) well past
the start-up jitter of a loaded two-core machine, so the batch scores reliably.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import TOY_RECORDS

SECONDS_PER_STEP = "0.1"


@pytest.fixture
def slow_toy_env(
    speedrun_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    records = tmp_path / "records"
    shutil.copytree(TOY_RECORDS, records)
    for manifest in (records / "toy").glob("r*/record.toml"):
        text = manifest.read_text()
        assert 'TOY_SECONDS_PER_STEP = "0.05"' in text
        manifest.write_text(
            text.replace('TOY_SECONDS_PER_STEP = "0.05"', f'TOY_SECONDS_PER_STEP = "{SECONDS_PER_STEP}"')
        )
    speedrun_env["SPEEDRUN_RECORDS_DIR"] = str(records)  # the cli fixture reads this dict
    monkeypatch.setenv("SPEEDRUN_RECORDS_DIR", str(records))
    return speedrun_env
