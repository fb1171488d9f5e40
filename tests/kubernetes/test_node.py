"""Pods run for real on the test cluster's node (issue 7, must-show 1): a pod from the locally
built tiny-track image, admitted under Pod Security "restricted", runs as uid 65534 with
runc, is reachable on its pod IP from this host, and its logs come back through the API
server (which reaches the kubelet with its client certificate, authorized by the kubelet's
webhook).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import REPO
from tests.kubernetes.cluster import Cluster, restricted_pod

pytestmark = pytest.mark.kubernetes

NS = "speedrun"
SERVE = """
import http.server, os
print(f"serving as uid {os.getuid()}", flush=True)
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"hello from the pod")
http.server.HTTPServer(("0.0.0.0", 8080), Hello).serve_forever()
"""


def test_a_restricted_pod_runs_serves_on_its_ip_and_its_logs_come_back(node: Cluster) -> None:
    node.kubectl("apply", "-f", str(REPO / "k8s" / "base" / "namespace.yaml"))
    node.kubectl("wait", "--for=create", "serviceaccount/default", "-n", NS, "--timeout=60s")
    pod = restricted_pod("node-probe", NS, {"app": "node-probe"}, ["python3", "-c", SERVE])
    node.kubectl("create", "-f", "-", stdin=json.dumps(pod))
    try:
        node.kubectl("wait", "--for=condition=Ready", "pod/node-probe", "-n", NS, "--timeout=120s")
        pod = json.loads(node.kubectl("get", "pod", "node-probe", "-n", NS, "-o", "json").stdout)
        assert pod["spec"]["nodeName"] == "speedrun-node"
        ip = pod["status"]["podIP"]
        assert ip.startswith("10.244.0."), ip
        deadline = time.monotonic() + 30
        while True:  # Ready means started (no probe): the server may not listen yet
            try:
                with urllib.request.urlopen(f"http://{ip}:8080/", timeout=10) as answer:
                    assert answer.read() == b"hello from the pod"
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, f"nothing listens on {ip}:8080"
                time.sleep(0.5)
        deadline = time.monotonic() + 30
        while "serving as uid 65534" not in (logs := node.kubectl("logs", "node-probe", "-n", NS).stdout):
            assert time.monotonic() < deadline, logs
            time.sleep(0.5)
    finally:
        node.kubectl("delete", "pod", "node-probe", "-n", NS, "--grace-period=0", "--wait=true", check=False)
