"""`speedrun batch FILE`: a matrix of tasks x agents x seeds on the toy track, killed with
SIGKILL in the middle and run again: every cell ends with exactly one verdict, no score
is written twice, nothing the dead run started is left behind (issue 7, must-show 4, on
the embedded default; the Kubernetes run of it is in tests/kubernetes)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.runtime import procfs
from orchestrator.settings import Settings
from tests.conftest import REPO, run_cli

BATCH = """
name = "toy-sweep"
tasks = ["toy-r1-r2", "toy-r2-r3"]
seeds = [0, 1]
concurrency = 2

[[agents]]
name = "oracle"

[[agents]]
name = "null"
"""


def _scores(home: Path) -> list[tuple]:
    db = home / "speedrun.db"
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return conn.execute("SELECT attempt_id FROM scores").fetchall()
        except sqlite3.OperationalError:
            return []


def test_a_killed_batch_resumes_and_each_cell_ends_once(speedrun_env: dict[str, str], tmp_path: Path) -> None:
    batch = tmp_path / "sweep.toml"
    batch.write_text(BATCH)
    home = Path(speedrun_env["SPEEDRUN_HOME"])
    first = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli.main", "batch", str(batch), "--json"],
        env={**os.environ, **speedrun_env},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while len(_scores(home)) < 2:  # mid-batch: some groups scored, others not
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no score within 240 s"
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    scored_before = len(_scores(home))
    assert scored_before < 8, "the batch was killed before it finished"

    again = run_cli("batch", str(batch), "--json", env=speedrun_env, timeout=600)
    assert again.returncode == 0, again.stderr
    rows = json.loads(again.stdout)
    cells = {(r["task"], r["agent"]) for r in rows}
    assert len(rows) == 8 and cells == {
        (t, a) for t in ("toy-r1-r2", "toy-r2-r3") for a in ("oracle", "null")
    }
    assert all(r["outcome"] == "scored" for r in rows), rows
    scores = [attempt for (attempt,) in _scores(home)]
    assert len(scores) == len(set(scores)), "a score was written twice"
    assert {r["attempt_id"] for r in rows} <= set(scores)

    # a third run finds nothing to do
    third = run_cli("batch", str(batch), "--json", env=speedrun_env, timeout=120)
    assert third.returncode == 0, third.stderr
    assert [r["attempt_id"] for r in json.loads(third.stdout)] == [r["attempt_id"] for r in rows]
    instance = Settings().instance_id  # this test's home: not what other tests left
    assert not procfs.find_labelled("speedrun/", instance=instance), "nothing the killed run started is alive"


def test_a_bad_batch_file_is_refused_clearly(speedrun_env: dict[str, str], tmp_path: Path) -> None:
    missing = run_cli("batch", str(tmp_path / "none.toml"), env=speedrun_env)
    assert missing.returncode != 0 and "cannot read batch file" in missing.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ntasks = []\nagents = [{name = "oracle"}]\nconcurency = 2\n')
    refused = run_cli("batch", str(bad), env=speedrun_env)
    assert refused.returncode != 0
    assert "tasks: List should have at least 1 item" in refused.stderr
    assert "concurency: Extra inputs are not permitted" in refused.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('name = "x"\ntasks = ["toy-r9-r10"]\nagents = [{name = "oracle"}]\n')
    assert "unknown task 'toy-r9-r10'" in run_cli("batch", str(unknown), env=speedrun_env).stderr


def test_knowledge_globs_are_read_relative_to_the_batch_file(
    speedrun_env: dict[str, str], tmp_path: Path
) -> None:
    from orchestrator.batch import BatchSpec

    folder = tmp_path / "sweeps"
    folder.mkdir()
    batch = folder / "b.toml"
    batch.write_text(
        'name = "k"\ntasks = ["toy-r1-r2"]\n[[agents]]\nname = "oracle"\nknowledge = ["notes/*.md"]\n'
    )
    assert BatchSpec.load(batch).agents[0].knowledge == [str(folder / "notes" / "*.md")]
    # a glob that matches nothing is refused before any attempt is recorded
    refused = run_cli("batch", str(batch), env=speedrun_env)
    assert refused.returncode == 2 and "no such file" in refused.stderr, refused.stderr
    assert "knowledge" in refused.stderr
    (folder / "notes").mkdir()
    (folder / "notes" / "a.md").write_text("background\n")
    assert BatchSpec.load(batch).agents[0].knowledge == [str(folder / "notes" / "*.md")]
