"""k8s/base against a real API server: it applies, and its service account gets only what
the orchestrator needs, in its own namespace (issue 7, must-show 3 and 5).

Authorization is the API server's own: each check is a real request made with a real
service-account token (TokenRequest), answered by the RBAC authorizer.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO
from tests.kubernetes.cluster import Cluster

pytestmark = pytest.mark.kubernetes

BASE = REPO / "k8s" / "base"
NS = "speedrun"
SA = "speedrun-orchestrator"
_PROBE = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "rbac-probe"},
    "data": {"probe": "1"},
}


@pytest.fixture(scope="module")
def token(cluster: Cluster) -> str:
    # a server-side dry run admits objects only into namespaces that exist: the namespace first
    cluster.kubectl("apply", "-f", str(BASE / "namespace.yaml"))
    cluster.kubectl("apply", "--dry-run=server", "-k", str(BASE))
    cluster.kubectl("apply", "-k", str(BASE))
    cluster.kubectl("create", "namespace", "elsewhere", check=False)
    cluster.kubectl("create", "secret", "generic", "api-keys", "-n", NS, "--from-literal=k=v", check=False)
    return cluster.kubectl("create", "token", SA, "-n", NS).stdout.strip()


def test_the_base_applies_and_its_namespace_refuses_privileged_pods(cluster: Cluster, token: str) -> None:
    ns = json.loads(cluster.kubectl("get", "namespace", NS, "-o", "json").stdout)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root-probe", "namespace": NS},
        "spec": {
            "containers": [{"name": "c", "image": "speedrun/none", "securityContext": {"privileged": True}}]
        },
    }
    # the service-account controller gives every namespace its "default" account, which
    # admission looks up before Pod Security has its say
    cluster.kubectl("wait", "--for=create", "serviceaccount/default", "-n", NS, "--timeout=60s")
    # as the admin: RBAC allows it, Pod Security admission must not
    done = cluster.kubectl("create", "-f", "-", stdin=json.dumps(privileged), check=False)
    assert done.returncode != 0 and "violates PodSecurity" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("verb", "resource", "namespace", "allowed"),
    [
        ("create", "pods", NS, True),
        ("delete", "pods", NS, True),
        ("get", "pods/log", NS, True),
        ("create", "jobs.batch", NS, True),
        ("watch", "jobs.batch", NS, True),
        ("create", "pods/exec", NS, False),
        ("get", "pods/exec", NS, False),
        ("create", "pods/attach", NS, False),
        ("create", "pods/portforward", NS, False),
        ("get", "secrets", NS, False),
        ("list", "secrets", NS, False),
        ("create", "pods", "elsewhere", False),
        ("list", "pods", "default", False),
        ("create", "roles.rbac.authorization.k8s.io", NS, False),
        ("list", "nodes", None, False),
        ("create", "namespaces", None, False),
    ],
)
def test_the_orchestrator_may_do_only_its_job(
    cluster: Cluster, token: str, verb: str, resource: str, namespace: str | None, allowed: bool
) -> None:
    where = ["-n", namespace] if namespace else []
    # `can-i VERB pods/exec` would ask about a pod named "exec": subresources go apart
    kind, _, sub = resource.partition("/")
    if sub:
        where.append(f"--subresource={sub}")
    answer = cluster.kubectl("auth", "can-i", verb, kind, *where, token=token, check=False).stdout.strip()
    assert answer == ("yes" if allowed else "no"), (verb, resource, namespace, answer)


def test_real_requests_meet_the_same_answers(cluster: Cluster, token: str) -> None:
    probe = json.dumps(_PROBE)
    made = cluster.kubectl("create", "-n", NS, "-f", "-", stdin=probe, token=token, check=False)
    assert made.returncode == 0, made.stderr
    secret = cluster.kubectl("get", "secret", "api-keys", "-n", NS, token=token, check=False)
    assert secret.returncode != 0 and "forbidden" in secret.stderr.lower(), secret.stderr
    other = cluster.kubectl("create", "-n", "elsewhere", "-f", "-", stdin=probe, token=token, check=False)
    assert other.returncode != 0 and "forbidden" in other.stderr.lower(), other.stderr


@pytest.mark.parametrize("overlay", sorted(p.name for p in (REPO / "k8s" / "overlays").iterdir()))
def test_every_overlay_passes_a_server_side_dry_run(cluster: Cluster, token: str, overlay: str) -> None:
    """Must-show 5: the API server validates and admits every object of each overlay."""
    done = cluster.kubectl(
        "apply", "--dry-run=server", "-k", str(REPO / "k8s" / "overlays" / overlay), check=False
    )
    assert done.returncode == 0, done.stderr
    assert "deployment.apps/speedrun-orchestrator" in done.stdout
