"""A real control plane (tests/cluster/up.sh) for the session: etcd, API server, controllers;
and, for tests that run pods, this machine as its node (tests/cluster/node.sh: containerd,
runc, a CNI bridge and a kubelet).

The binaries come from tests/cluster/build.sh (Go modules, cached in Go's build cache);
where they have not been built, these tests skip and say how to build them.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.settings import Settings
from tests.conftest import REPO

CLUSTER = REPO / "tests" / "cluster"
BIN = Path(os.environ.get("SPEEDRUN_CLUSTER_BIN", CLUSTER / "bin"))


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    state: Path

    def kubectl(
        self, *args: str, token: str | None = None, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """kubectl as the admin, or with ``token`` (the flag overrides the kubeconfig's user)."""
        auth = ["--token", token] if token else []
        done = subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), *auth, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not (BIN / "kube-apiserver").exists():
        reason = f"no test cluster binaries in {BIN}: run tests/cluster/build.sh"
        if os.environ.get("SPEEDRUN_REQUIRE_CLUSTER") == "1":
            pytest.fail(f"the test cluster is required here (SPEEDRUN_REQUIRE_CLUSTER=1): {reason}")
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "SPEEDRUN_CLUSTER_BIN": str(BIN)}
    up = subprocess.run(
        [str(CLUSTER / "up.sh"), str(state)], capture_output=True, text=True, timeout=300, env=env
    )
    try:
        assert up.returncode == 0, up.stderr + "".join(
            p.read_text()[-3000:] for p in (state / "logs").glob("*.log")
        )
        yield Cluster(Path(up.stdout.strip().splitlines()[-1]), state)
    finally:
        subprocess.run([str(CLUSTER / "down.sh"), str(state)], timeout=60, env=env)


@pytest.fixture(scope="session")
def node(cluster: Cluster) -> Cluster:
    """The cluster with this machine as its Ready node, holding the tiny-track image."""
    from tests import docker_support

    if os.geteuid() != 0:
        if os.environ.get("SPEEDRUN_REQUIRE_CLUSTER") == "1":
            pytest.fail("the test cluster's node is required here, but a kubelet and containerd need root")
        pytest.skip("a kubelet and containerd need root")
    docker_support.require_docker()
    env = {**os.environ, "SPEEDRUN_CLUSTER_BIN": str(BIN)}
    script = str(CLUSTER / "node.sh")
    done = subprocess.run([script, str(cluster.state)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    image = f"{docker_support.IMAGE}:latest"
    loaded = subprocess.run(
        [script, "--load", image, "--state", str(cluster.state)], capture_output=True, text=True, timeout=600
    )
    assert loaded.returncode == 0, loaded.stderr
    return cluster


_NODES: list[Cluster] = []
"""The session's cluster once a test asked for its node (for ``labelled``)."""


def labelled(owner: str) -> list[str]:
    """Pods, Jobs and ConfigMaps labelled with ``owner`` still in the cluster."""
    if not _NODES:
        return []
    found = _NODES[0].kubectl(
        "get", "pods,jobs,configmaps", "-n", "speedrun", "-l", f"speedrun.io/owner={owner}", "-o", "name"
    )
    return found.stdout.split()


@pytest.fixture
def kubernetes_settings(node: Cluster, settings: Settings) -> Iterator[Settings]:
    """``settings`` for the kubernetes backend on the test cluster: its namespace, images from
    the node (never pulled), and this test's data folder as a read-only claim."""
    from orchestrator.settings import KubernetesSettings

    if not _NODES:
        _NODES.append(node)
        node.kubectl("apply", "-f", str(REPO / "k8s" / "base" / "namespace.yaml"))
        node.kubectl("wait", "--for=create", "serviceaccount/default", "-n", "speedrun", "--timeout=60s")
    claim = f"data-{uuid.uuid4().hex[:10]}"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": claim},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "hostPath": {"path": str(settings.data_dir), "type": "Directory"},
            "claimRef": {"namespace": "speedrun", "name": claim},
        },
    }
    claimed = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": "speedrun"},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": claim,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    node.kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [volume, claimed]})
    )
    k8s = KubernetesSettings(
        kubeconfig=node.kubeconfig,
        image_pull_policy="Never",
        data_claim=claim,
        cpu="500m",
        memory_headroom_bytes=256 * 1024**2,
        start_timeout_s=120,
    )
    try:
        yield settings.model_copy(update={"kubernetes": k8s})
    finally:
        node.kubectl("delete", "pvc", claim, "-n", "speedrun", "--wait=false", check=False)
        node.kubectl("delete", "pv", claim, "--wait=false", check=False)


def restricted_pod(
    name: str,
    namespace: str,
    labels: dict[str, str],
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    memory: str = "128Mi",
) -> dict:
    """A one-container pod of the tiny-track image that Pod Security "restricted" admits:
    uid 65534, no privilege escalation, no capabilities, read-only root, never pulled."""
    size = {"cpu": "100m", "memory": memory, "ephemeral-storage": "64Mi"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "runAsGroup": 65534,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": "speedrun-tiny-cpu:latest",
                    "imagePullPolicy": "Never",
                    "command": command,
                    "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {"requests": size, "limits": size},
                }
            ],
        },
    }
