"""The orchestrator in the cluster (issue 7, must-shows 2 and 4): k8s/overlays/test-cluster
applied to the test cluster; the orchestrator Deployment runs `speedrun serve` with the
tiny oracle and null batch on the kubernetes backend (sandboxes as pods, each scored run
as a Job). Its pod is killed mid-scoring; the replacement resumes the batch. Both attempts
land in the same FSR bands as on the local backend, each is scored once, and nothing is
left running.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests import docker_support
from tests.conftest import NULL_FSR_BAND, ORACLE_FSR_BAND, REPO
from tests.kubernetes.cluster import CLUSTER, Cluster

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow, pytest.mark.cluster_e2e]

NS = "speedrun"
OVERLAY = REPO / "k8s" / "overlays" / "test-cluster"
HOST_DIRS = Path("/var/lib/speedrun-cluster")  # behind the overlay's hostPath volumes
ORCHESTRATOR = "app.kubernetes.io/name=speedrun-orchestrator"
OURS = "speedrun.io/project=speedrun-orchestrator"


def _build_and_load(node: Cluster, image: str) -> None:
    built = subprocess.run(
        [str(REPO / ".venv" / "bin" / "speedrun"), "images", "build", image],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=1200,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    loaded = subprocess.run(
        [str(CLUSTER / "node.sh"), "--load", f"{image}:latest", "--state", str(node.state)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert loaded.returncode == 0, loaded.stderr


def _fresh_host_dirs() -> None:
    """Empty home and data folders the pods' uid may write (hostPath volumes keep their owner)."""
    for name in ("home", "data"):
        folder = HOST_DIRS / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shutil.chown(folder, 65534, 65534)


def _orchestrator_pods(node: Cluster) -> list[dict]:
    listed = node.kubectl("get", "pods", "-n", NS, "-l", ORCHESTRATOR, "-o", "json").stdout
    return [p for p in json.loads(listed)["items"] if "deletionTimestamp" not in p["metadata"]]


def _metric(ip: str, sample: str) -> float:
    """A sample on the orchestrator's /metrics, named with its labels as exposed (0 when absent)."""
    with urllib.request.urlopen(f"http://{ip}:9464/metrics", timeout=5) as answer:
        text = answer.read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(sample + " ")]
    return values[0] if values else 0.0


def _scorer_runs(node: Cluster) -> list[str]:
    """The runs (speedrun.io/run labels) of the scorer pods now in the cluster."""
    found = node.kubectl("get", "pods", "-n", NS, "-l", "speedrun.io/role=scorer", "-o", "json")
    return [p["metadata"]["labels"].get("speedrun.io/run", "") for p in json.loads(found.stdout)["items"]]


def _wait(what: str, check, timeout_s: float, node: Cluster):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if found := check():
                return found
        except OSError:
            pass  # the pod is not answering yet
        time.sleep(2)
    logs = node.kubectl("logs", "-n", NS, "-l", ORCHESTRATOR, "--tail=60", check=False)
    pytest.fail(f"waited {timeout_s:.0f}s for {what}; orchestrator log:\n{logs.stdout}{logs.stderr}")


def _batch_rows(node: Cluster) -> list[dict] | None:
    """The batch's result rows, once the orchestrator has printed them all.

    Its stdout and stderr share the pod log line by line, so a log record (one JSON
    object per line, at column 0) can land inside the printed array, whose own lines
    are indented.
    """
    lines = node.kubectl("logs", "-n", NS, "-l", ORCHESTRATOR, "--tail=-1", check=False).stdout.splitlines()
    start = lines.index("[") if "[" in lines else len(lines)
    if "]" not in lines[start:]:
        return None
    body = [line for line in lines[start : lines.index("]", start) + 1] if not line.startswith("{")]
    return json.loads("\n".join(body))


@pytest.mark.timeout(2400)
def test_the_in_cluster_orchestrator_resumes_its_batch_after_its_pod_is_killed(node: Cluster) -> None:
    docker_support.require_docker()
    _build_and_load(node, "speedrun-orchestrator")
    _fresh_host_dirs()
    node.kubectl("apply", "-k", str(OVERLAY))
    node.kubectl("rollout", "status", "deployment/speedrun-orchestrator", "-n", NS, "--timeout=300s")
    try:
        [first] = _orchestrator_pods(node)
        ip = first["status"]["podIP"]

        # mid-batch: both attempts submitted and scoring, a timed run's Job under way
        def timing() -> bool:
            scoring = _metric(ip, 'speedrun_attempts_in_state{state="scoring"}') == 2
            return scoring and any(run != "warmup" for run in _scorer_runs(node))

        _wait("the scoring session's first timed run", timing, 900, node)
        node.kubectl("delete", "pod", first["metadata"]["name"], "-n", NS, "--grace-period=0", "--force")

        def replaced() -> bool:
            pods = _orchestrator_pods(node)
            return bool(pods) and pods[0]["metadata"]["uid"] != first["metadata"]["uid"]

        _wait("a replacement orchestrator pod", replaced, 300, node)
        rows = _wait("the resumed batch's results", lambda: _batch_rows(node), 1500, node)

        by_agent = {row["agent"]: row for row in rows}
        assert set(by_agent) == {"oracle", "null"}, rows
        assert all(row["outcome"] == "scored" and row["backend"] == "kubernetes" for row in rows), rows
        assert ORACLE_FSR_BAND[0] <= by_agent["oracle"]["fsr"] <= ORACLE_FSR_BAND[1], rows
        assert NULL_FSR_BAND[0] <= by_agent["null"]["fsr"] <= NULL_FSR_BAND[1], rows
        # nothing lost or scored twice: the two attempts of the batch, one score each
        with sqlite3.connect(HOST_DIRS / "home" / "speedrun.db") as db:
            attempts = db.execute("SELECT id FROM attempts").fetchall()
            scores = db.execute("SELECT attempt_id, COUNT(*) FROM scores GROUP BY attempt_id").fetchall()
        assert {a for (a,) in attempts} == {row["attempt_id"] for row in rows}
        assert sorted(n for _, n in scores) == [1, 1], scores

        # what the killed pod had running is gone once cleanup has run; nothing else is left
        cleanup = ["exec", "-n", NS, "deploy/speedrun-orchestrator", "--"]
        node.kubectl(*cleanup, "speedrun", "cleanup", "--backend", "kubernetes", "--json")
        left = node.kubectl("get", "pods,jobs,configmaps", "-n", NS, "-l", OURS, "-o", "name")
        assert left.stdout.split() == [], left.stdout
    finally:
        # the orchestrator and its volumes; the namespace and its RBAC stay for later tests
        node.kubectl("delete", "deployment/speedrun-orchestrator", "-n", NS, "--wait=true", check=False)
        node.kubectl("delete", "pvc", "--all", "-n", NS, "--wait=false", check=False)
        node.kubectl("delete", "pv", "speedrun-test-home", "speedrun-test-data", "--wait=false", check=False)
