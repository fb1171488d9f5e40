"""A control that misses the target at its seed gets its repeat re-run at a new seed.

Single runs of a record scatter around the target (the tiny track's record 2 ends
between 2.155 and 2.217 against a target of 2.22 over random seeds), so a session that
drew an unlucky seed would otherwise fail on our side. Here toy record 1 misses the
target at seed 1 only, or at every seed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from orchestrator.backends.local import LocalBackend
from orchestrator.catalog.catalog import Catalog
from orchestrator.catalog.data import ensure_track_data
from orchestrator.domain import Outcome
from orchestrator.scorer.plan import HarnessEvent, Role
from orchestrator.scorer.score import ControlRunsFailed
from orchestrator.scorer.session import build_plan, run_session
from orchestrator.settings import Settings
from tests.conftest import TOY_RECORDS

# prepended to toy record 1: which seeds leave it short of the target (1.0)
_UNLUCKY = """
import os as _os
_unlucky = _os.environ["NANOGPT_SEED"] in {seeds}
"""
_MISSED_LOSS = "    loss = helper.loss_at(step, NUM_STEPS) + (0.5 if _unlucky else 0.0)\n"


def _catalog(tmp_path: Path, unlucky: str) -> Catalog:
    records = tmp_path / "records"
    shutil.copytree(TOY_RECORDS, records)
    script = records / "toy" / "r1" / "train_gpt.py"
    text = script.read_text()
    text = text.replace("    loss = helper.loss_at(step, NUM_STEPS)\n", _MISSED_LOSS)
    assert _MISSED_LOSS in text
    script.write_text(_UNLUCKY.format(seeds=unlucky) + text)
    return Catalog.load(records, tmp_path / "cache")


async def _score(settings: Settings, catalog: Catalog) -> tuple[object, list[HarnessEvent]]:
    task = catalog.task("toy-r1-r2")
    rules = settings.scorer.model_copy(update={"warmup": False})
    plan = build_plan(
        session_id="seeds",
        task=task,
        data=ensure_track_data(catalog.track(task.track), settings.data_dir),
        submissions={"sub": {"train_gpt.py": task.reference.read_files()["train_gpt.py"].decode()}},
        settings=rules,
        seeds=[1],
    )
    events: list[HarnessEvent] = []
    try:
        [score] = await run_session(LocalBackend(settings), plan, ["sub"], events.append, rules)
    except ControlRunsFailed as e:
        return e, events
    return score, events


async def test_an_unlucky_seed_is_redrawn_for_the_whole_repeat(settings: Settings, tmp_path: Path) -> None:
    score, events = await _score(settings, _catalog(tmp_path, unlucky="{'1'}"))
    [redrawn] = [e for e in events if e.event == "seed_redrawn"]
    assert redrawn.label == "r0-baseline" and redrawn.measurement is not None
    assert redrawn.measurement.seed == 1 and redrawn.seed != 1
    started = [e.label for e in events if e.event == "run_started"]
    assert started == ["r0-baseline", "r0-baseline", "r0-sub-sub", "r0-reference"], started
    assert score.outcome is Outcome.SCORED, score.reason  # type: ignore[attr-defined]
    runs = score.runs  # type: ignore[attr-defined]
    assert {m.role for m in runs} == {Role.BASELINE, Role.REFERENCE, Role.SUBMISSION}
    assert {m.seed for m in runs} == {redrawn.seed}, "every run of the repeat shares the new seed"


async def test_a_control_that_misses_at_every_seed_fails_on_our_side(
    settings: Settings, tmp_path: Path
) -> None:
    failed, events = await _score(settings, _catalog(tmp_path, unlucky="{_os.environ['NANOGPT_SEED']}"))
    assert isinstance(failed, ControlRunsFailed), failed
    assert "baseline runs failed in the scorer: r0-baseline: did_not_reach_target" in str(failed)
    started = [e.label for e in events if e.event == "run_started"]
    tries = 1 + settings.scorer.seed_redraws
    assert started == ["r0-baseline"] * tries + ["r0-sub-sub", "r0-reference"], started
    assert len([e for e in events if e.event == "seed_redrawn"]) == settings.scorer.seed_redraws
