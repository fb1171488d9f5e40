"""Every record passes the static rules as a submission against its predecessor and itself.

The oracle submits record N+1 and the null agent record N unchanged: a rule that
refuses either is a false positive that no agent could avoid.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.catalog.catalog import Catalog
from orchestrator.scorer.validate import validate_submission
from tests.conftest import REPO

CATALOG = Catalog.load(REPO / "records", Path("/nonexistent-cache"))
PAIRS = [t for t in CATALOG.tasks.values() if t.baseline.manifest.source.kind == "local"]


@pytest.mark.parametrize("task", PAIRS, ids=lambda t: t.id)
@pytest.mark.parametrize("agent", ["oracle", "null"])
def test_record_passes_as_a_submission(task, agent: str) -> None:
    baseline = {p: d.decode() for p, d in task.baseline.read_files().items()}
    source = task.reference if agent == "oracle" else task.baseline
    submission = {p: d for p, d in source.read_files().items() if p in task.editable}
    validate_submission(
        submission,
        editable=task.editable,
        max_total_bytes=1024 * 1024,
        baseline=baseline,
        protected_names=frozenset(task.baseline.manifest.protected.hyperparameters),
    )


def test_both_local_tracks_are_covered() -> None:
    assert {t.track for t in PAIRS} >= {"tiny", "gpu_mini"}
