"""The kubernetes backend at scale, on a GPU pool of simulated nodes (kwok).

kwok (a Go module; ``tests/cluster/build.sh kwok``) plays the kubelet of nodes that
exist only in the API server: each offers 8 ``nvidia.com/gpu`` behind the taint GPU
pools carry, and the pods bound to it turn Running and Ready. The API server,
scheduler and admission (Pod Security "restricted") are the real ones of the test
cluster, so this exercises the backend's own pod specs, waits, concurrency and
cleanup, with more pods than one machine could run. ``./taskw test:scale``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest

from orchestrator.backends import Backend, SandboxSpec, create_backend
from orchestrator.errors import BackendError
from orchestrator.settings import KubernetesSettings, SandboxLimits, Settings
from tests.conftest import REPO
from tests.kubernetes.cluster import BIN, Cluster

pytestmark = [pytest.mark.kubernetes, pytest.mark.cluster_scale]

NODES = 5
GPUS_PER_NODE = 8
POOL = NODES * GPUS_PER_NODE
"""Sandboxes of one GPU each that fill the pool; as many again wait for it. More than the
32 threads the event loop's default pool has at most, wherever this runs."""
POOL_LABEL = {"speedrun.io/pool": "gpu-sim"}
TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
NS = "speedrun"


def _node(name: str) -> dict:
    capacity = {
        "cpu": "64",
        "memory": "512Gi",
        "ephemeral-storage": "2Ti",
        "pods": "110",
        "nvidia.com/gpu": str(GPUS_PER_NODE),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {**POOL_LABEL, "kubernetes.io/hostname": name, "type": "kwok"},
        },
        "spec": {"taints": [TAINT]},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


@pytest.fixture(scope="module")
def gpu_pool(cluster: Cluster) -> Iterator[list[str]]:
    """NODES simulated 8-GPU nodes, Ready, kept so by a kwok controller of this module."""
    if not (BIN / "kwok").exists():
        pytest.skip(f"no kwok in {BIN}: run tests/cluster/build.sh kwok (./taskw test:scale does)")
    cluster.kubectl("apply", "-f", str(REPO / "k8s" / "base" / "namespace.yaml"))
    cluster.kubectl("wait", "--for=create", "serviceaccount/default", "-n", NS, "--timeout=60s")
    log = (cluster.state / "logs" / "kwok.log").open("wb")
    kwok = subprocess.Popen(
        [
            str(BIN / "kwok"),
            f"--kubeconfig={cluster.kubeconfig}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.250.0.0/16",
            "--node-ip=10.250.255.1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    names = [f"gpu-sim-{i}" for i in range(NODES)]
    try:
        nodes = {"apiVersion": "v1", "kind": "List", "items": [_node(n) for n in names]}
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(nodes))
        cluster.kubectl("wait", "--for=condition=Ready", *(f"node/{n}" for n in names), "--timeout=60s")
        yield names
    finally:
        cluster.kubectl("delete", "node", *names, "--wait=false", check=False)
        kwok.terminate()
        kwok.wait(timeout=30)
        log.close()


def _settings(settings: Settings, cluster: Cluster, start_timeout_s: float) -> Settings:
    k8s = KubernetesSettings(
        kubeconfig=cluster.kubeconfig,
        cpu="1",
        node_selector=POOL_LABEL,
        tolerations=[{"key": TAINT["key"], "operator": "Exists", "effect": TAINT["effect"]}],
        start_timeout_s=start_timeout_s,
    )
    return settings.model_copy(update={"kubernetes": k8s})


@pytest.fixture
async def backend(settings: Settings, cluster: Cluster, gpu_pool: list[str]) -> AsyncIterator[Backend]:
    async with create_backend("kubernetes", _settings(settings, cluster, start_timeout_s=240)) as b:
        yield b
        await b.cleanup(keep=())


def _spec(attempt_id: str, gpus: int = 1) -> SandboxSpec:
    return SandboxSpec(
        attempt_id=attempt_id,
        files={"train_gpt.py": b"print('step:0/1 val_loss:3.0 train_time:0ms')\n"},
        editable=["train_gpt.py"],
        launch_argv=["{python}", "train_gpt.py"],
        launch_env={},
        target_val_loss=3.28,
        limits=SandboxLimits(),
        image="speedrun-tiny-cpu",
        gpus=gpus,
    )


def _sandbox_pods(cluster: Cluster) -> list[dict]:
    found = cluster.kubectl("get", "pods", "-n", NS, "-l", "speedrun.io/role=sandbox", "-o", "json")
    return json.loads(found.stdout)["items"]


async def _until(what: str, check, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout_s:.0f}s for {what}")
        await asyncio.sleep(1)


@pytest.mark.timeout(900)
async def test_a_batch_larger_than_the_gpu_pool_waits_for_it_and_cleans_up(
    backend: Backend, settings: Settings, cluster: Cluster, gpu_pool: list[str]
) -> None:
    started = time.monotonic()
    first = await asyncio.gather(*(backend.start_sandbox(_spec(f"scale-a{i:02d}")) for i in range(POOL)))
    fill_s = time.monotonic() - started
    placed = Counter(p["spec"].get("nodeName") for p in _sandbox_pods(cluster))
    assert placed == Counter({name: GPUS_PER_NODE for name in gpu_pool}), placed

    # as many again: no GPU is free, so each waits for the scheduler, holding a blocking watch
    waiting = [asyncio.create_task(backend.start_sandbox(_spec(f"scale-b{i:02d}"))) for i in range(POOL)]

    def all_pending() -> bool:
        pods = _sandbox_pods(cluster)
        return sum(p["status"].get("phase") == "Pending" for p in pods) == POOL

    await _until("the second half's pods, pending", all_pending, 120)
    assert not any(t.done() for t in waiting), "none can start while the pool is full"

    # the first half ends: its GPUs go to the waiting half, which the waits must not block
    started = time.monotonic()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(backend.stop_sandbox(s, interrupted=False) for s in first)), timeout=120
        )
    except TimeoutError:
        pytest.fail("stopping sandboxes stalled behind the sandboxes waiting for GPUs")
    second = await asyncio.wait_for(asyncio.gather(*waiting), timeout=180)
    handover_s = time.monotonic() - started
    assert {s.attempt_id for s in second} == {f"scale-b{i:02d}" for i in range(POOL)}
    placed = Counter(p["spec"].get("nodeName") for p in _sandbox_pods(cluster))
    assert placed == Counter({name: GPUS_PER_NODE for name in gpu_pool}), placed

    started = time.monotonic()
    removed = await backend.cleanup(keep=())
    cleanup_s = time.monotonic() - started
    assert sorted(removed) == sorted(
        [f"pod speedrun-sandbox-scale-b{i:02d}" for i in range(POOL)]
        + [f"configmap speedrun-sandbox-scale-b{i:02d}" for i in range(POOL)]
    )
    ours = f"speedrun.io/instance={settings.instance_id}"
    left = cluster.kubectl("get", "pods,configmaps", "-n", NS, "-l", ours, "-o", "name")
    assert left.stdout.split() == []
    print(
        f"\n{POOL} sandboxes filled {NODES} nodes x {GPUS_PER_NODE} GPUs in {fill_s:.1f}s; "
        f"{POOL} more took over their GPUs in {handover_s:.1f}s; "
        f"cleanup of {len(removed)} objects {cleanup_s:.1f}s"
    )


@pytest.mark.timeout(300)
async def test_a_sandbox_no_node_can_take_fails_as_infrastructure_and_leaves_nothing(
    settings: Settings, cluster: Cluster, gpu_pool: list[str]
) -> None:
    spec = _spec("scale-huge", gpus=GPUS_PER_NODE + 1)  # more than any node of the pool has
    async with create_backend("kubernetes", _settings(settings, cluster, start_timeout_s=5)) as backend:
        with pytest.raises(BackendError, match="becoming ready: nothing after 5s"):
            await backend.start_sandbox(spec)
    owner = "speedrun.io/owner=scale-huge"
    left = cluster.kubectl("get", "pods,configmaps", "-n", NS, "-l", owner, "-o", "name")
    assert left.stdout.split() == []
