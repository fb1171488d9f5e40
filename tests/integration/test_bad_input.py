"""Bad input through the real ``speedrun`` CLI: always a clear, classified result, never a traceback.

Must show: an unknown task, a malformed record manifest, a submission that does not
parse, a script that crashes, hangs or floods output: each ends in a clear,
classified result, never a traceback for the user.

Each case runs the CLI as a user would (a subprocess) and checks: the exit code
(0 with a JSON result, or 2 with one ``error:`` line), no ``Traceback`` anywhere in
stderr, and what was recorded (``speedrun attempts list --json``).

The scored cases use a copy of the toy track whose reference (record 2) runs its 20
steps without sleeping. The controls then differ by ~2 s instead of ~1 s, well clear of
torchrun's start-up jitter (~1 s on 2 cores), so "reference not faster than baseline"
(an infrastructure failure by design) cannot make these tests flaky.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.settings import Settings
from orchestrator.store import SqlStore

REPO = Path(__file__).resolve().parents[2]
TOY_RECORDS = REPO / "tests" / "fixtures" / "records"

Speedrun = Callable[..., subprocess.CompletedProcess[str]]

FAST_SCORER = {
    # a hung submission is killed after 2.0 s * 1.5 + 5 s; a flood after 100 kB
    "SPEEDRUN_SCORER__TIMEOUT_FACTOR": "1.5",
    "SPEEDRUN_SCORER__STARTUP_ALLOWANCE_S": "5",
    "SPEEDRUN_SCORER__MAX_OUTPUT_BYTES": "100000",
}


@pytest.fixture
def speedrun(speedrun_env: dict[str, str]) -> Speedrun:
    """``speedrun ARGS`` in a subprocess, with the test's env plus ``env=`` overrides."""

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli.main", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env={**os.environ, **speedrun_env, **(env or {})},
        )

    return run


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """A usage error: the exit code, nothing on stdout, and one ``error:`` line naming the problem."""
    assert_no_traceback(result)
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def listed_attempts(listed: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The output of ``speedrun attempts list --json``."""
    assert listed.returncode == 0, listed.stderr
    assert_no_traceback(listed)
    return json.loads(listed.stdout)


async def recorded(home: Path) -> list[str]:
    """Attempt ids in the store of a speedrun home (read in-process)."""
    async with SqlStore(f"sqlite+aiosqlite:///{home / 'speedrun.db'}") as store:
        return [a.id for a in await store.list_attempts(limit=100)]


def _speedrun_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli.main", *args]


# --- cases that never reach the scorer, run ahead concurrently ----------------------------
#
# Each of these is one or two short CLI processes (about a second of start-up each).
# They run all at once, each in its own speedrun home, before any timed scoring starts,
# so they share the two cores with nothing timing-sensitive. Each test then checks its
# own case. Sequentially they would add ~15 s to the suite.


def _broken_records(root: Path, edit: Callable[[str], str]) -> tuple[Path, Path]:
    records = root / "records"
    shutil.copytree(TOY_RECORDS, records)
    manifest = records / "toy" / "r2" / "record.toml"
    manifest.write_text(edit(manifest.read_text()))
    return records, manifest


MANIFEST_BREAKS: dict[str, tuple[Callable[[str], str], str]] = {
    "invalid-toml": (
        lambda t: t.replace('name = "Toy record 2"', 'name = "Toy record 2'),
        "not valid TOML",
    ),
    "missing-field": (
        lambda t: t.replace("target_val_loss = 1.0\n", ""),
        "invalid manifest: target_val_loss: Field required",
    ),
    "editable-not-in-files": (
        lambda t: t.replace('editable = ["train_gpt.py"]', 'editable = ["train_gpt.py", "optimizer.py"]'),
        "every editable file must also be listed in files",
    ),
    "path-escapes-record": (
        lambda t: t.replace(
            'files = ["train_gpt.py", "helper.py"]', 'files = ["train_gpt.py", "../helper.py"]'
        ),
        "'../helper.py' must be a relative path inside the record",
    ),
}

INVALID_SUBMISSIONS: dict[str, tuple[dict[str, str | bytes], str]] = {
    "syntax-error": (
        {"train_gpt.py": "import os\nprint('ok')\nsteps = = 40\n"},
        "train_gpt.py:3: syntax error: invalid syntax",
    ),
    # a folder: every problem is named, by file
    "not-utf8-and-not-editable": (
        {"train_gpt.py": b"name = '\xff\xfe'\n", "helper.py": "def loss_at(s, t):\n    return 0.0\n"},
        "not editable in this task: helper.py; not_utf8_text: train_gpt.py: not UTF-8 text",
    ),
}


@dataclass
class Case:
    home: Path
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    list_after: bool = False
    """Also run ``speedrun attempts list --json`` once the command has finished."""
    extra: dict[str, Any] = field(default_factory=dict)
    result: subprocess.CompletedProcess[str] | None = None
    listed: subprocess.CompletedProcess[str] | None = None

    def full_env(self, data_root: Path) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("SPEEDRUN_")}
        return {
            **inherited,
            "SPEEDRUN_HOME": str(self.home),
            "SPEEDRUN_RECORDS_DIR": str(TOY_RECORDS),
            "SPEEDRUN_DATA_ROOT": str(data_root),
            "SPEEDRUN_LOG_FORMAT": "json",
            "SPEEDRUN_CONFIG": "",  # no config file
            **self.env,
        }


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _files(path: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in ([path] if path.is_file() else sorted(path.rglob("*"))) if p.is_file()}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> dict[str, Case]:
    base = tmp_path_factory.mktemp("quick")

    def home(name: str) -> Path:
        (base / name).mkdir()
        return base / name / "home"

    cases = {
        "unknown-task": Case(home("unknown-task"), ["run", "--task", "nope", "--agent", "oracle", "--json"]),
        "unknown-agent": Case(
            home("unknown-agent"), ["run", "--task", "toy-r1-r2", "--agent", "nobody", "--json"]
        ),
        "markup-task": Case(home("markup-task"), ["run", "--task", "nope[/x]", "--agent", "oracle"]),
        "invalid-setting": Case(
            home("invalid-setting"), ["tasks", "list"], {"SPEEDRUN_SCORER__TIMEOUT_FACTOR": "fast"}
        ),
    }
    absent_config = base / "typo" / "speedrun.toml"
    cases["missing-config"] = Case(
        home("missing-config"), ["tasks", "list"], {"SPEEDRUN_CONFIG": str(absent_config)}
    )
    broken_config = _write(base, "broken.toml", '[scorer]\nrepeats = 3\ntimeout_factor = "2.0\n')
    cases["config-syntax"] = Case(
        home("config-syntax"), ["tasks", "list"], {"SPEEDRUN_CONFIG": str(broken_config)}
    )
    missing = base / "no-such-file.py"
    cases["missing-path"] = Case(
        home("missing-path"),
        ["score", "--task", "toy-r1-r2", str(missing), "--json"],
        extra={"path": missing},
    )
    for name, (edit, _) in MANIFEST_BREAKS.items():
        records, manifest = _broken_records(base / f"manifest-{name}", edit)
        cases[f"manifest-{name}"] = Case(
            base / f"manifest-{name}" / "home",
            ["tasks", "list", "--json"],
            {"SPEEDRUN_RECORDS_DIR": str(records)},
            extra={"manifest": manifest},
        )
    records, manifest = _broken_records(base / "manifest-run", lambda t: t.replace("[launch]\n", ""))
    cases["manifest-run"] = Case(
        base / "manifest-run" / "home",
        ["run", "--task", "toy-r1-r2", "--agent", "oracle", "--json"],
        {"SPEEDRUN_RECORDS_DIR": str(records)},
        extra={"manifest": manifest},
    )
    for name, (files, _) in INVALID_SUBMISSIONS.items():
        folder = base / f"submission-{name}"
        folder.mkdir()
        if len(files) == 1:
            path = _write(folder, "submission.py", files["train_gpt.py"])
        else:
            path = folder / "submission"
            path.mkdir()
            for rel, content in files.items():
                _write(path, rel, content)
        cases[f"submission-{name}"] = Case(
            folder / "home",
            ["score", "--task", "toy-r1-r2", str(path), "--json"],
            list_after=True,
            extra={"path": path, "files": _files(path)},
        )

    def run(case: Case) -> None:
        env = case.full_env(shared_data_root)
        case.result = subprocess.run(
            _speedrun_cmd(*case.args), capture_output=True, text=True, timeout=180, cwd=REPO, env=env
        )
        if case.list_after:
            case.listed = subprocess.run(
                _speedrun_cmd("attempts", "list", "--json"),
                capture_output=True,
                text=True,
                timeout=180,
                cwd=REPO,
                env=env,
            )

    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        list(pool.map(run, cases.values()))
    return cases


# --- usage errors: nothing is recorded ---------------------------------------------------


async def test_unknown_task_is_one_clear_line(quick: dict[str, Case]) -> None:
    case = quick["unknown-task"]
    assert case.result is not None
    assert_one_error_line(case.result, 2, "unknown task 'nope'", "`speedrun tasks list` shows them")
    assert await recorded(case.home) == []


async def test_unknown_agent_is_one_clear_line(quick: dict[str, Case]) -> None:
    case = quick["unknown-agent"]
    assert case.result is not None
    assert_one_error_line(
        case.result, 2, "unknown agent 'nobody'", "available: aide, null, oracle, tool-calling"
    )
    assert await recorded(case.home) == [], "an unknown agent is refused before anything is recorded"


async def test_missing_submission_path_is_one_clear_line(quick: dict[str, Case]) -> None:
    case = quick["missing-path"]
    assert case.result is not None
    assert_one_error_line(case.result, 2, f"{case.extra['path']}: no such file or folder")
    assert await recorded(case.home) == []


def test_unknown_task_with_markup_like_name_is_one_clear_line(quick: dict[str, Case]) -> None:
    case = quick["markup-task"]
    assert case.result is not None
    assert_one_error_line(case.result, 2, "unknown task 'nope[/x]'")


def test_invalid_setting_is_one_clear_line(quick: dict[str, Case]) -> None:
    case = quick["invalid-setting"]
    assert case.result is not None
    assert_one_error_line(case.result, 2, "invalid settings", "timeout_factor")


def test_missing_config_file_named_on_purpose_is_one_clear_line(quick: dict[str, Case]) -> None:
    case = quick["missing-config"]
    assert case.result is not None
    config = case.full_env(Path())["SPEEDRUN_CONFIG"]
    assert_one_error_line(case.result, 2, f"SPEEDRUN_CONFIG names {config}", "does not exist")


def test_config_syntax_error_names_the_file(quick: dict[str, Case]) -> None:
    case = quick["config-syntax"]
    assert case.result is not None
    config = case.full_env(Path())["SPEEDRUN_CONFIG"]
    assert_one_error_line(case.result, 2, f"config file {config} is not valid TOML", "line 3")


# --- malformed record manifests ----------------------------------------------------------


@pytest.mark.parametrize("name", list(MANIFEST_BREAKS))
def test_malformed_manifest_is_one_clear_line_naming_the_file(quick: dict[str, Case], name: str) -> None:
    case = quick[f"manifest-{name}"]
    assert case.result is not None
    _, problem = MANIFEST_BREAKS[name]
    assert_one_error_line(case.result, 2, str(case.extra["manifest"]), problem)  # the file at fault, by path


async def test_malformed_manifest_stops_a_run_before_anything_is_recorded(quick: dict[str, Case]) -> None:
    case = quick["manifest-run"]
    assert case.result is not None
    assert_one_error_line(
        case.result, 2, str(case.extra["manifest"]), "invalid manifest", "launch: Field required"
    )
    assert await recorded(case.home) == []


# --- submissions rejected before running -------------------------------------------------


def _check_scored(
    result: subprocess.CompletedProcess[str],
    listed: subprocess.CompletedProcess[str] | None,
    files_before: dict[Path, bytes],
) -> dict[str, Any]:
    """A classified result: exit 0, JSON on stdout, the attempt listed with the same outcome."""
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["state"] == "finished" and row["agent"] == "file" and row["task"] == "toy-r1-r2"
    assert _files_now(files_before) == files_before, "scoring must not touch the submitted files"
    assert listed is not None
    [entry] = [a for a in listed_attempts(listed) if a["attempt_id"] == row["attempt_id"]]
    assert (entry["state"], entry["outcome"], entry["flags"], entry["reason"]) == (
        "finished",
        row["outcome"],
        row["flags"],
        row["reason"],
    )
    return row


def _files_now(before: dict[Path, bytes]) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in before}


@pytest.mark.parametrize("name", list(INVALID_SUBMISSIONS))
def test_submission_that_does_not_parse_is_rejected_with_the_line(quick: dict[str, Case], name: str) -> None:
    case = quick[f"submission-{name}"]
    assert case.result is not None
    row = _check_scored(case.result, case.listed, case.extra["files"])
    _, reason = INVALID_SUBMISSIONS[name]
    assert row["outcome"] == "submission_failed"
    assert "invalid_submission" in row["flags"]
    assert reason in row["reason"]
    assert row["fsr"] is None and row["reached_target"] is False
    assert row["baseline_seconds"] is None, "rejected before anything ran"


# --- submissions that run and misbehave --------------------------------------------------


@pytest.fixture
def scorer_env() -> dict[str, str]:
    return dict(FAST_SCORER)


TOY_R1 = (REPO / "tests" / "fixtures" / "records" / "toy" / "r1" / "train_gpt.py").read_text()


def _toy_r1_with(old: str, new: str) -> str:
    """Record 1 with one edit: misbehaviour that passes the static rules, so only running shows it."""
    assert TOY_R1.count(old) == 1, old
    return TOY_R1.replace(old, new)


_SLEEP = "    if step < NUM_STEPS:\n        time.sleep(per_step)\n"
CRASH = _toy_r1_with(_SLEEP, '    raise RuntimeError("boom: the submission crashed on purpose")\n')
HANG = _toy_r1_with("start = time.perf_counter()\n", 'print("loading...", flush=True)\ntime.sleep(3600)\n')
FLOOD = _toy_r1_with("start = time.perf_counter()\n", 'while True:\n    print("spam " * 200)\n')
# claims a minute of training at its first line, a fraction of a second after launch
FAKE_TIME = _toy_r1_with(
    "elapsed_ms = (time.perf_counter() - start) * 1000", "elapsed_ms = 60000.0 * (step + 1)"
)


def _score(speedrun: Speedrun, path: Path, env: dict[str, str]) -> dict[str, Any]:
    before = _files(path)
    result = speedrun("score", "--task", "toy-r1-r2", str(path), "--json", env=env)
    return _check_scored(result, speedrun("attempts", "list", "--json", env=env), before)


def _run_of_submission(score: dict[str, Any]) -> dict[str, Any]:
    [run] = [r for r in score["runs"] if r["role"] == "submission"]
    return run


async def _stored_score(settings: Settings, attempt_id: str) -> dict[str, Any]:
    async with SqlStore(settings.resolved_database_url) as store:
        score = await store.get_score(attempt_id)
    assert score is not None
    return score


def _assert_controls_ran(row: dict[str, Any]) -> None:
    """A classified *submission* failure: the controls were fine, so this is not infrastructure."""
    assert row["baseline_seconds"] > row["reference_seconds"] > 0
    assert row["fsr"] is None and row["submission_seconds"] is None


async def test_script_that_crashes_is_classified_crashed(
    speedrun: Speedrun, tmp_path: Path, scorer_env: dict[str, str], settings: Settings
) -> None:
    row = _score(speedrun, _write(tmp_path, "crash.py", CRASH), scorer_env)
    assert row["outcome"] == "submission_failed"
    assert row["flags"] == ["crashed", "did_not_reach_target"]
    assert "crashed" in row["reason"] and "code 1" in row["reason"]
    _assert_controls_ran(row)
    run = _run_of_submission(await _stored_score(settings, row["attempt_id"]))
    assert (run["reason"], run["returncode"], run["step"], run["val_loss"]) == ("exited", 1, 0, 3.0)
    assert "RuntimeError: boom: the submission crashed on purpose" in run["log_tail"]


async def test_script_that_hangs_is_killed_and_classified_timed_out(
    speedrun: Speedrun, tmp_path: Path, scorer_env: dict[str, str], settings: Settings
) -> None:
    row = _score(speedrun, _write(tmp_path, "hang.py", HANG), scorer_env)
    assert row["outcome"] == "submission_failed"
    assert row["flags"] == ["did_not_reach_target", "no_progress", "timed_out"]
    assert "timed_out" in row["reason"]
    _assert_controls_ran(row)
    run = _run_of_submission(await _stored_score(settings, row["attempt_id"]))
    timeout = 2.0 * 1.5 + 5  # baseline's published seconds * factor + start-up allowance
    assert run["reason"] == "timed_out" and timeout <= run["wall_s"] < timeout + 5
    assert "loading..." in run["log_tail"]


async def test_script_that_floods_output_is_stopped_and_classified_output_limit(
    speedrun: Speedrun, tmp_path: Path, scorer_env: dict[str, str], settings: Settings
) -> None:
    row = _score(speedrun, _write(tmp_path, "flood.py", FLOOD), scorer_env)
    assert row["outcome"] == "submission_failed"
    assert row["flags"] == ["did_not_reach_target", "no_progress", "output_limit"]
    assert "output_limit" in row["reason"]
    _assert_controls_ran(row)
    run = _run_of_submission(await _stored_score(settings, row["attempt_id"]))
    assert run["reason"] == "output_limit"
    assert 100_000 < run["output_bytes"] < 100_000 + 2 * 1024 * 1024, "stopped soon after the cap"
    assert run["wall_s"] < 15


async def test_progress_line_claiming_more_time_than_passed_is_flagged(
    speedrun: Speedrun, tmp_path: Path, scorer_env: dict[str, str], settings: Settings
) -> None:
    row = _score(speedrun, _write(tmp_path, "fake.py", FAKE_TIME), scorer_env)
    assert row["outcome"] == "submission_failed"
    assert "reported_time_exceeds_wall" in row["flags"]
    assert "reported_time_exceeds_wall" in row["reason"]
    assert row["fsr"] is None and row["baseline_seconds"] > row["reference_seconds"] > 0
    run = _run_of_submission(await _stored_score(settings, row["attempt_id"]))
    assert run["reported_train_ms"] == 60000.0 and not run["reached_target"]
    assert run["wall_s"] < 60, "stopped by the scorer's own clock at the first false claim"
