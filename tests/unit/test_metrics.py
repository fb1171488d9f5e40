"""The metrics module: bounded labels, the hooks' arithmetic, the export formats."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.domain import Attempt, AttemptState, Outcome, ToolCall
from orchestrator.sandbox.api import API_PREFIX, Experiment, ExperimentMetrics, JournalPage, SandboxConfig
from orchestrator.settings import SandboxLimits

prom = pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from orchestrator import metrics  # noqa: E402


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def attempt(agent: str = "oracle", **changes: object) -> Attempt:
    now = time.time()
    base = {
        "id": f"att-{agent}",
        "task_id": "toy-r1-r2",
        "agent": agent,
        "backend": "local",
        "state": AttemptState.FINISHED,
        "outcome": Outcome.SCORED,
        "reason": None,
        "version": 4,
        "owner": None,
        "lease_expires_at": None,
        "config": {},
        "sandbox": None,
        "created_at": now - 30,
        "updated_at": now,
    }
    return Attempt(**{**base, **changes})


def test_tool_operations_are_the_servers_routes(tmp_path: Path) -> None:
    from orchestrator.sandbox.server import create_app

    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "train_gpt.py").write_text("print(1)\n")
    config = SandboxConfig(
        attempt_id="a",
        workspace=tmp_path / "ws",
        state_dir=tmp_path / "state",
        editable=["train_gpt.py"],
        launch_argv=["{python}", "train_gpt.py"],
        launch_env={},
        target_val_loss=1.0,
        limits=SandboxLimits(),
        agent_token="x",
        admin_token="y",
    )
    routes = {r.name for r in create_app(config).routes if getattr(r, "path", "").startswith(API_PREFIX)}
    assert routes == metrics.TOOL_OPERATIONS


def test_tool_calls_made_up_paths_are_counted_as_other() -> None:
    before = value("speedrun_tool_calls_total", operation="other", code="404")
    calls = [
        ToolCall(seq=i, op=f"/v1/made-up-{i}", request={}, status=404, duration_ms=1.0, created_at=0.0)
        for i in range(3)
    ]
    metrics.tool_calls(calls)
    assert value("speedrun_tool_calls_total", operation="other", code="404") == before + 3
    families = {f.name for f in metrics.REGISTRY.collect()}
    assert not any(
        "made-up" in s.labels.get("operation", "") for f in metrics.REGISTRY.collect() for s in f.samples
    )
    assert "speedrun_tool_calls" in families


def test_journal_pages_count_each_finished_experiment_once_and_budget_refusals() -> None:
    a = attempt(agent="journal-agent", id="att-journal", state=AttemptState.ACTING, outcome=None)
    metrics.attempt_provisioning(a)
    done = Experiment(
        number=0,
        workspace_version=1,
        status="finished",
        reason="exited",
        wall_s=2.5,
        metrics=ExperimentMetrics(),
    )
    running = Experiment(number=1, workspace_version=1, status="running", metrics=ExperimentMetrics())
    refused = ToolCall(
        seq=5,
        op="run_experiment",
        request={},
        status=429,
        error="budget_exceeded",
        duration_ms=1,
        created_at=0,
    )
    before = value("speedrun_experiments_total", task="toy-r1-r2", reason="exited")
    page = JournalPage(calls=[], versions=[], experiments=[done, running], submitted_version=None)
    metrics.journal_page(a.id, page)
    metrics.journal_page(a.id, page.model_copy(update={"calls": [refused]}))  # the runner lists all again
    assert value("speedrun_experiments_total", task="toy-r1-r2", reason="exited") == before + 1
    assert (
        value("speedrun_budget_overruns_total", task="toy-r1-r2", agent="journal-agent", budget="experiments")
        == 1
    )


def _run(label: str, role: str, attempt_id: str | None, flags: list[str] = ()) -> dict:  # type: ignore[assignment]
    return {"label": label, "role": role, "attempt_id": attempt_id, "reason": "stopped", "wall_s": 2.0,
            "flags": list(flags), "repeat": 0}  # fmt: skip


def test_scored_attempts_share_control_runs_of_their_session() -> None:
    task = "toy-r9-r10"
    one = attempt(agent="a1", id="s-1", task_id=task, config={"model": "m1"})
    two = attempt(agent="a2", id="s-2", task_id=task)
    controls = [_run("r0-baseline", "baseline", None), _run("r0-reference", "reference", None)]
    fp = {"gpus": [{"name": "H100"}, {"name": "H100"}]}
    for a, fsr, flags in ((one, 0.9, []), (two, None, ["crashed"])):
        result = {
            "session_id": "sess",
            "fsr": fsr,
            "fingerprint": fp,
            "runs": [*controls, _run(f"r0-sub-{a.id}", "submission", a.id, flags)],
        }
        metrics.attempt_finished(a, result)
    assert value("speedrun_scorer_runs_total", task=task, role="baseline", reason="stopped") == 1
    assert value("speedrun_scorer_runs_total", task=task, role="submission", reason="stopped") == 2
    assert value("speedrun_fsr_ratio_count", task=task, agent="a1", model="m1") == 1
    assert value("speedrun_fsr_ratio_count", task=task, agent="a2", model="none") == 0
    assert value("speedrun_integrity_flags_total", task=task, role="submission", reason="crashed") == 1
    # 2 GPUs x 2 s per run: the submission's under its model, the controls under none
    assert value("speedrun_gpu_seconds_total", task=task, model="m1", phase="scoring") == 4.0
    assert value("speedrun_gpu_seconds_total", task=task, model="none", phase="scoring") == 4.0 * 3
    assert value("speedrun_attempts_finished_total", task=task, agent="a1", model="m1", backend="local",
                 outcome="scored") == 1  # fmt: skip


def test_failed_sandbox_starts_and_sessions_are_counted() -> None:
    before = value("speedrun_sandbox_starts_total", backend="bk", result="failed")
    with pytest.raises(RuntimeError), metrics.sandbox_start("bk"):
        raise RuntimeError("no capacity")
    with metrics.sandbox_start("bk"):
        pass
    assert value("speedrun_sandbox_starts_total", backend="bk", result="failed") == before + 1
    assert value("speedrun_sandbox_provisioning_seconds_count", backend="bk") >= 1
    with pytest.raises(RuntimeError), metrics.scoring_session("t-x", "bk"):
        raise RuntimeError("harness died")
    assert value("speedrun_scorer_sessions_total", task="t-x", backend="bk", result="failed") == 1


def test_exported_names_come_from_the_registry() -> None:
    names = metrics.exported_names()
    assert {
        "speedrun_tool_calls_total",
        "speedrun_tool_call_duration_seconds_bucket",
        "speedrun_attempts_in_state",
    } <= names
    for family in metrics.REGISTRY.collect():
        assert family.name.startswith("speedrun_")
        assert not {"attempt_id", "attempt", "id"} & {lbl for s in family.samples for lbl in s.labels}


async def test_textfile_is_valid_exposition_with_store_gauges(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    created = await store.create_attempt(
        task_id="toy-r1-r2", agent="null", backend="local", config={}, owner="me", ttl_s=30
    )
    await store.transition(created.id, AttemptState.PENDING, AttemptState.PROVISIONING)
    path = tmp_path / "textfile" / "speedrun.prom"
    await metrics.export_textfile(store, path)
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    in_state = {s.labels["state"]: s.value for s in families["speedrun_attempts_in_state"].samples}
    assert in_state == {"pending": 0, "provisioning": 1, "acting": 0, "scoring": 0}
    oldest = {
        s.labels["state"]: s.value for s in families["speedrun_attempt_oldest_in_state_seconds"].samples
    }
    assert 0 <= oldest["provisioning"] < 60 and oldest["pending"] == 0
    await metrics.export_textfile(store, None)  # no textfile configured: nothing to do
