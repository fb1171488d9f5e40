"""The orchestrator in the cluster (issue 7, must-show 2): k8s/overlays/test-cluster applied
to the test cluster, the orchestrator Deployment running `speedrun serve` with a batch of
the tiny oracle and null attempts on the kubernetes backend: sandboxes as pods, each
scored run as a Job. Both land in the same FSR bands as on the local backend.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests import docker_support
from tests.conftest import REPO
from tests.kubernetes.cluster import CLUSTER, Cluster

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

NS = "speedrun"
OVERLAY = REPO / "k8s" / "overlays" / "test-cluster"


def _build_and_load(node: Cluster, image: str) -> None:
    built = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "orchestrator.cli.main", "images", "build", image],
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


@pytest.mark.timeout(1800)
def test_the_in_cluster_orchestrator_scores_oracle_and_null_on_the_tiny_track(node: Cluster) -> None:
    docker_support.require_docker()
    _build_and_load(node, "speedrun-orchestrator")
    node.kubectl("apply", "-k", str(OVERLAY))
    batch = ["serve", "--host", "0.0.0.0", "--port", "9464", "--task", "tiny-r1-r2"]
    batch += ["--agent", "oracle", "--agent", "null", "--json"]
    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/args", "value": batch}]
    node.kubectl(
        "patch", "deployment", "speedrun-orchestrator", "-n", NS, "--type=json", "-p", json.dumps(patch)
    )
    node.kubectl("rollout", "status", "deployment/speedrun-orchestrator", "-n", NS, "--timeout=300s")
    deadline = time.monotonic() + 1500
    rows = None
    while rows is None:
        assert time.monotonic() < deadline, node.kubectl(
            "logs", "deployment/speedrun-orchestrator", "-n", NS
        ).stdout
        logs = node.kubectl("logs", "deployment/speedrun-orchestrator", "-n", NS, check=False).stdout
        start = logs.find("[\n")
        if (
            start >= 0
            and "batch finished"
            in node.kubectl("logs", "deployment/speedrun-orchestrator", "-n", NS, check=False).stderr + logs
        ):
            rows = json.loads(logs[start : logs.rindex("]") + 1])
        time.sleep(5)
    by_agent = {row["agent"]: row for row in rows}
    assert by_agent["oracle"]["outcome"] == "scored" and 0.7 <= by_agent["oracle"]["fsr"] <= 1.3, rows
    assert by_agent["null"]["outcome"] == "scored" and -0.3 <= by_agent["null"]["fsr"] <= 0.3, rows
    assert by_agent["oracle"]["backend"] == "kubernetes"
