"""Every overlay of k8s/, alone and with the monitoring component added as its README says,
renders (kustomize, as built into the test cluster's kubectl) with every namespaced
resource in the orchestrator's namespace: a resource elsewhere is one nothing of ours
selects, scrapes or protects (issue 18, must-show 4)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.kubernetes.cluster import BIN

OVERLAYS = sorted(p.parent for p in (REPO / "k8s" / "overlays").glob("*/kustomization.yaml"))
MONITORING = REPO / "k8s" / "monitoring"
CLUSTER_SCOPED = {
    "Namespace",
    "PriorityClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "RuntimeClass",
    "CustomResourceDefinition",
}


def _render(root: Path) -> list[dict]:
    kubectl = BIN / "kubectl"
    if not kubectl.exists():
        reason = f"no {kubectl} (its kustomize renders the overlays): run tests/cluster/build.sh"
        if os.environ.get("SPEEDRUN_REQUIRE_CLUSTER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    done = subprocess.run([str(kubectl), "kustomize", str(root)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _with_monitoring(overlay: Path, tmp_path: Path) -> Path:
    """An overlay of ``overlay`` with the monitoring component, as an operator would add it."""
    root = tmp_path / overlay.name
    root.mkdir()
    (root / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(overlay, root)],
                "components": [os.path.relpath(MONITORING, root)],
            }
        )
    )
    return root


@pytest.mark.parametrize("monitoring", [False, True], ids=["alone", "with-monitoring"])
@pytest.mark.parametrize("overlay", OVERLAYS, ids=[o.name for o in OVERLAYS])
def test_every_resource_of_an_overlay_is_in_the_speedrun_namespace(
    overlay: Path, monitoring: bool, tmp_path: Path
) -> None:
    docs = _render(_with_monitoring(overlay, tmp_path) if monitoring else overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ServiceAccount", "NetworkPolicy"} <= kinds
    if monitoring:
        assert {"ServiceMonitor", "PrometheusRule", "Service"} <= kinds
    elsewhere = [
        f"{d['kind']}/{d['metadata']['name']} in {d['metadata'].get('namespace', '(none)')}"
        for d in docs
        if d["kind"] not in CLUSTER_SCOPED and d["metadata"].get("namespace") != "speedrun"
    ]
    assert not elsewhere, elsewhere


def test_overlays_are_found() -> None:
    assert {o.name for o in OVERLAYS} >= {"production-gpu", "test-cluster"}


def test_llm_keys_come_from_a_secret_the_orchestrator_alone_mounts(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.settings import Settings

    for overlay in OVERLAYS:
        [deployment] = [d for d in _render(overlay) if d["kind"] == "Deployment"]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert {
            "prefix": "SPEEDRUN_LLM__KEYS__",
            "secretRef": {"name": "speedrun-llm-keys", "optional": True},
        } in (container["envFrom"])
    # what the kubelet makes of a Secret with the entries `openai` and `anthropic`
    monkeypatch.setenv("SPEEDRUN_CONFIG", "")
    monkeypatch.setenv("SPEEDRUN_LLM__KEYS__openai", "sk-from-secret-1")
    monkeypatch.setenv("SPEEDRUN_LLM__KEYS__anthropic", "sk-from-secret-2")
    keys = Settings().llm.keys
    assert {name: key.get_secret_value() for name, key in keys.items()} == {
        "openai": "sk-from-secret-1",
        "anthropic": "sk-from-secret-2",
    }
