"""NetworkPolicy is enforced on the test cluster's node (kube-router's policy controller).

k8s/base's policies, applied to a namespace of their own: the orchestrator reaches a
sandbox's tool API; a stranger pod, free to go out (a policy of the test's own), reaches
this host but not the sandbox; a scorer pod reaches neither. Each client pod probes once
a second and prints what it found; the test reads the steady state at the end of its log,
since the controller programs a new pod's rules a moment after the pod starts.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import REPO
from tests.kubernetes.cluster import Cluster, restricted_pod

pytestmark = pytest.mark.kubernetes

NS = "netpol-probe"
NODE_IP = "10.244.0.1"  # the bridge's gateway: this host, as pods see it
SERVE = """
import http.server
class Tools(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"tools")
http.server.HTTPServer(("0.0.0.0", 8080), Tools).serve_forever()
"""
PROBE = """
import os, socket, time
targets = os.environ["TARGETS"].split()
for _ in range(12):
    found = []
    for target in targets:
        host, port = target.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            found.append(f"{target}=open")
        except OSError:
            found.append(f"{target}=closed")
    print(" ".join(found), flush=True)
    time.sleep(1)
"""


STRANGER_EGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "stranger-egress"},
    "spec": {
        "podSelector": {"matchLabels": {"probe": "stranger"}},
        "policyTypes": ["Egress"],
        "egress": [{}],
    },
}


def _pod(name: str, labels: dict[str, str], script: str, env: dict[str, str] | None = None) -> dict:
    return restricted_pod(name, NS, labels, ["python3", "-c", script], env=env, memory="64Mi")


@pytest.fixture
def namespace(node: Cluster) -> Iterator[str]:
    node.kubectl("create", "namespace", NS)
    try:
        node.kubectl("wait", "--for=create", "serviceaccount/default", "-n", NS, "--timeout=60s")
        node.kubectl("apply", "-n", NS, "-f", str(REPO / "k8s" / "base" / "networkpolicies.yaml"))
        node.kubectl("apply", "-n", NS, "-f", "-", stdin=json.dumps(STRANGER_EGRESS))
        yield NS
    finally:
        node.kubectl("delete", "namespace", NS, "--wait=false", check=False)


@pytest.fixture
def host_port() -> Iterator[int]:
    """A port open on this host, on every address: pods reach it at the bridge's gateway."""
    with socket.create_server(("0.0.0.0", 0)) as listener:
        listener.settimeout(0)
        yield listener.getsockname()[1]


def test_the_base_policies_let_only_the_orchestrator_reach_a_sandbox(
    node: Cluster, namespace: str, host_port: int
) -> None:
    server = _pod("sandbox", {"speedrun.io/role": "sandbox"}, SERVE)
    node.kubectl("create", "-f", "-", stdin=json.dumps(server))
    node.kubectl("wait", "--for=condition=Ready", "pod/sandbox", "-n", NS, "--timeout=120s")
    sandbox_ip = node.kubectl("get", "pod", "sandbox", "-n", NS, "-o", "jsonpath={.status.podIP}").stdout
    sandbox, host = f"{sandbox_ip}:8080", f"{NODE_IP}:{host_port}"
    clients = {
        "orchestrator": {"app.kubernetes.io/name": "speedrun-orchestrator"},
        "stranger": {"probe": "stranger"},
        "scorer": {"speedrun.io/role": "scorer"},
    }
    pods = [_pod(name, labels, PROBE, {"TARGETS": f"{sandbox} {host}"}) for name, labels in clients.items()]
    node.kubectl("create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    for name in clients:
        node.kubectl(
            "wait", "--for=jsonpath={.status.phase}=Succeeded", f"pod/{name}", "-n", NS, "--timeout=120s"
        )
    seen = {name: node.kubectl("logs", name, "-n", NS).stdout.split("\n") for name in clients}
    steady = {name: set(lines[-4:-1]) for name, lines in seen.items()}  # the last three probes
    assert steady["orchestrator"] == {f"{sandbox}=open {host}=open"}, seen["orchestrator"]
    assert steady["stranger"] == {f"{sandbox}=closed {host}=open"}, seen["stranger"]
    assert steady["scorer"] == {f"{sandbox}=closed {host}=closed"}, seen["scorer"]
