"""Must-show 1: a real Prometheus scrapes ``speedrun serve`` while it runs a tiny batch.

The batch is oracle and null on toy-r1-r2 (slower steps, see conftest). Queries over
Prometheus's HTTP API must return the series the batch produced, with their values.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.observability.prom import MISSING, PROMETHEUS, free_port, prometheus, wait_until

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason=MISSING)
pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

TASK = "toy-r1-r2"


def test_prometheus_scrapes_serve_during_a_batch(slow_toy_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    batch = tmp_path / "batch.toml"
    batch.write_text(
        f'name = "scrape"\ntasks = ["{TASK}"]\nagents = [{{name = "oracle"}}, {{name = "null"}}]\n'
    )
    argv = ["serve", "--port", str(port), "--json", "--batch", str(batch)]
    serve = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "serve.log").open("w"),
        text=True,
        env={**os.environ, **slow_toy_env},
        cwd=REPO,
    )
    try:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200,
            60,
            "speedrun serve to listen",
        )
        with prometheus(tmp_path, [f"127.0.0.1:{port}"]) as prom:
            wait_until(lambda: prom.values('up{job="speedrun"}') == {(): 1.0}, 30, "a first scrape")
            finished = wait_until(
                lambda: (
                    prom.values("speedrun_attempts_finished_total", "agent", "outcome", "task", "backend")
                    if len(prom.query("speedrun_attempts_finished_total")) == 2
                    else None
                ),
                300,
                "both attempts to finish, as seen by Prometheus",
            )
            assert finished == {
                ("oracle", "scored", TASK, "local"): 1.0,
                ("null", "scored", TASK, "local"): 1.0,
            }
            # scraped *during* the batch: both attempts sat in scoring for one shared session
            assert prom.values('max_over_time(speedrun_attempts_in_state{state="scoring"}[10m])') == {(): 2.0}
            assert prom.values('speedrun_attempts_in_state{state="scoring"}') == {(): 0.0}
            assert prom.values("speedrun_scorer_sessions_total", "task", "result") == {(TASK, "ok"): 1.0}
            assert prom.values("sum by (role) (speedrun_scorer_runs_total)", "role") == {
                ("baseline",): 1.0,
                ("reference",): 1.0,
                ("submission",): 2.0,
            }
            # the oracle writes the next record's script and submits; null only lists and submits
            calls = prom.values("speedrun_tool_calls_total", "operation", "code")
            assert calls == {("list_files", "200"): 1.0, ("write_file", "200"): 1.0, ("submit", "200"): 2.0}
            fsr = prom.values("speedrun_fsr_ratio_count", "agent")
            assert fsr == {("oracle",): 1.0, ("null",): 1.0}
            assert prom.values("sum(speedrun_sandbox_starts_total)") == {(): 2.0}
            assert prom.values("speedrun_attempt_queue_wait_seconds_count") == {(): 2.0}
            assert prom.values("speedrun_build_info", "version") == {("0.1.0",): 1.0}
    finally:
        serve.send_signal(signal.SIGTERM)
        out, _ = serve.communicate(timeout=60)
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()
    rows = json.loads(out)
    assert sorted((r["agent"], r["outcome"]) for r in rows) == [("null", "scored"), ("oracle", "scored")]
