"""The CLI's JSON contract (must-show 3) and the attempt views, on the toy track."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from subprocess import CompletedProcess

from tests.conftest import TOY_RECORDS, run_cli

Cli = Callable[..., CompletedProcess[str]]

ATTEMPT_KEYS = {
    "attempt_id",
    "task",
    "agent",
    "state",
    "fsr",
    "baseline_seconds",
    "reference_seconds",
    "submission_seconds",
    "val_loss",
    "reached_target",
    "flags",
}


def test_tasks_list_json(cli: Cli) -> None:
    result = cli("tasks", "list", "--json")
    assert result.returncode == 0, result.stderr
    tasks = json.loads(result.stdout)
    assert isinstance(tasks, list) and [t["id"] for t in tasks] == ["toy-r1-r2", "toy-r2-r3"]
    for task in tasks:
        assert {"id", "track", "baseline_seconds", "reference_seconds"} <= set(task)
        assert task["baseline_seconds"] > task["reference_seconds"] > 0


def test_records_list_and_show(cli: Cli) -> None:
    records = json.loads(cli("records", "list", "--json").stdout)
    assert [r["id"] for r in records] == ["toy-r1", "toy-r2", "toy-r3"]
    shown = json.loads(cli("records", "show", "toy-r2", "--json").stdout)
    assert shown["launch"] == {
        "nproc": 1,
        "script": "train_gpt.py",
        "env": {"TOY_SECONDS_PER_STEP": "0.05"},
        "device": "cpu",
    }
    missing = cli("records", "show", "toy-r7")
    assert missing.returncode == 2 and "unknown record 'toy-r7'" in missing.stderr


def test_run_oracle_json_then_inspect(cli: Cli) -> None:
    result = cli("run", "--task", "toy-r1-r2", "--agent", "oracle", "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert set(row) >= ATTEMPT_KEYS
    assert (row["task"], row["agent"], row["state"], row["outcome"]) == (
        "toy-r1-r2",
        "oracle",
        "finished",
        "scored",
    )
    assert row["reached_target"] and row["flags"] == [] and row["val_loss"] <= 1.0
    assert row["baseline_seconds"] > row["reference_seconds"]
    assert isinstance(row["fsr"], float)
    assert "run 1/3" in result.stderr, "scoring progress is shown while it runs"

    shown = json.loads(cli("attempts", "show", row["attempt_id"], "--json").stdout)
    assert shown["agent"] == "oracle", "the agent's name, not its (absent) model report"
    assert shown["agent_report"] is None, "the oracle uses no model"
    ops = [c["op"] for c in shown["tool_calls"]]
    assert ops == ["write_file", "submit"], "every tool call is recorded"
    assert [v["version"] for v in shown["workspace_versions"]] == [0, 1]
    assert shown["score"]["fingerprint"]["cpu_count"] >= 1
    roles = sorted(r["role"] for r in shown["score"]["runs"])
    assert roles == ["baseline", "reference", "submission"]

    logs = cli("attempts", "logs", row["attempt_id"])
    assert "--- scorer run r0-baseline" in logs.stdout and "val_loss:1.0000" in logs.stdout

    listed = json.loads(cli("attempts", "list", "--json").stdout)
    assert [r["attempt_id"] for r in listed] == [row["attempt_id"]]


def test_cancel_a_finished_attempt_is_refused_clearly(cli: Cli) -> None:
    row = json.loads(cli("run", "--task", "toy-r2-r3", "--agent", "null", "--json").stdout)
    result = cli("attempts", "cancel", row["attempt_id"])
    assert result.returncode == 2
    assert "is finished" in result.stderr and "Traceback" not in result.stderr


def test_cleanup_reports_nothing_on_a_clean_home(cli: Cli) -> None:
    result = cli("cleanup", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"speedrun {version('speedrun-orchestrator')}\n"


def test_report_on_an_empty_store_says_there_is_nothing_yet(cli: Cli) -> None:
    table = cli("report")
    assert table.returncode == 0, table.stderr
    assert table.stdout.strip() == "no finished attempts yet"
    as_json = cli("report", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == []


def test_score_exits_3_when_the_attempt_is_an_infrastructure_failure(
    speedrun_env: dict[str, str], tmp_path: Path
) -> None:
    """A baseline that cannot run is our side's failure, not the submission's: the row is
    printed, and the exit code says infrastructure, as for an infrastructure error."""
    records = tmp_path / "records"
    shutil.copytree(TOY_RECORDS, records)
    baseline = records / "toy" / "r1" / "train_gpt.py"
    baseline.write_text('raise SystemExit("the baseline cannot start here")\n' + baseline.read_text())
    submission = records / "toy" / "r2" / "train_gpt.py"
    env = {**speedrun_env, "SPEEDRUN_RECORDS_DIR": str(records)}
    done = run_cli("score", "--task", "toy-r1-r2", str(submission), "--json", env=env)
    row = json.loads(done.stdout)
    assert row["outcome"] == "infra_failed", row
    assert "baseline" in row["reason"]
    assert done.returncode == 3, done.stderr
