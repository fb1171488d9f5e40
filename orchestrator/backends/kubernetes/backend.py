"""The kubernetes backend: a sandbox pod per attempt, a fresh Job pod per scored run.

The sandbox pod runs the tool API server on its pod IP; the orchestrator (in the
cluster, or on a node of a test cluster) reaches it there. Record files and the
server's configuration arrive in a ConfigMap owned by the pod; the workspace is an
emptyDir seeded from it. The scorer harness runs here, as for the docker backend,
and starts each run as its own Job from the pristine image (runs.py). Everything
carries the attempt's or session's labels, so `speedrun cleanup --backend
kubernetes` finds what a dead orchestrator left.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from orchestrator.backends.base import Backend, Sandbox, SandboxSpec, reclaimed_owners, sandbox_config
from orchestrator.backends.kubernetes import cluster, manifests
from orchestrator.backends.kubernetes.runs import PodLauncher, delete_job
from orchestrator.domain import SandboxHandle, ScoringHandle
from orchestrator.errors import BackendError
from orchestrator.images import IMAGE_ENV, IMAGE_PYTHON
from orchestrator.images.catalog import read_lock
from orchestrator.log import get_logger
from orchestrator.sandbox.api import SandboxConfig
from orchestrator.scorer.harness import run_plan_in_process
from orchestrator.scorer.plan import EventSink, HarnessResult, ScoringPlan
from orchestrator.settings import Settings

log = get_logger(__name__)


class KubernetesSandbox(Sandbox):
    def __init__(self, config: SandboxConfig, pod: str, ip: str, image: str) -> None:
        super().__init__(config, f"http://{ip}:{manifests.SANDBOX_PORT}")
        self.pod = pod
        self.image = image

    @property
    def handle(self) -> dict[str, Any]:
        return {"pod": self.pod, "url": self.tool_url, "image": self.image}


class KubernetesBackend(Backend):
    name = "kubernetes"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._k8s = settings.kubernetes
        self._instance = settings.instance_id
        self._scoring = settings.home / "kubernetes"
        self._api: cluster.Api | None = None
        # pushed images are pulled by the registry digest the lock pins (images push)
        self._pinned = {
            name: entry.repo_digest
            for name, entry in read_lock(settings.images_dir).images.items()
            if entry.repo_digest
        }

    async def _cluster(self) -> cluster.Api:
        if self._api is None:
            self._api = await asyncio.to_thread(cluster.connect, self._k8s)
        return self._api

    def image_ref(self, name: str | None) -> str:
        """The pod image of an environment: its pinned registry digest once pushed, else the
        local tag (a node that holds the image, as on the test cluster)."""
        if not name:
            raise BackendError("the record names no environment image; the kubernetes backend needs one")
        if name in self._pinned:
            return self._pinned[name]
        return name if ":" in name or "@" in name else f"{name}:{self._k8s.image_tag}"

    # --- sandbox ------------------------------------------------------------------------

    async def start_sandbox(self, spec: SandboxSpec) -> Sandbox:
        api = await self._cluster()
        image = self.image_ref(spec.image)
        name = f"speedrun-sandbox-{spec.attempt_id}".lower()
        config = sandbox_config(
            spec,
            python=IMAGE_PYTHON,
            workspace=Path(manifests.WORKSPACE),
            state_dir=Path(manifests.STATE),
            env=IMAGE_ENV,
            host="0.0.0.0",
            port=manifests.SANDBOX_PORT,
        )
        labels = cluster.labels(spec.attempt_id, "sandbox", self._instance)
        files = dict(spec.files)
        config_map = manifests.config_map(name, labels, files, **{"config.json": config.model_dump_json()})
        pod = manifests.sandbox_pod(
            name=name,
            labels=labels,
            image=image,
            config_map_name=name,
            files=files,
            memory_bytes=spec.limits.memory_bytes + self._k8s.memory_headroom_bytes,
            gpus=spec.gpus,
            data_files=manifests.data_files(spec.launch_env, self._settings.data_dir),
            settings=self._k8s,
        )

        def create() -> str:
            with cluster.translated(f"starting the sandbox pod of {spec.attempt_id}"):
                api.core.create_namespaced_config_map(api.namespace, config_map)
                made = api.core.create_namespaced_pod(api.namespace, pod)
                # the ConfigMap goes with its pod, whoever deletes the pod
                owner = {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": made.metadata.uid}
                api.core.patch_namespaced_config_map(
                    name, api.namespace, {"metadata": {"ownerReferences": [owner]}}
                )
            return str(made.metadata.uid)

        await api.run(create)
        try:
            ip = await self._wait_ready(api, name)
        except BackendError:
            await self._delete_owned(lambda owner: owner == spec.attempt_id)
            raise
        sandbox = KubernetesSandbox(config, name, ip, image)
        log.info("sandbox pod started", pod=name, ip=ip, image=image)
        return sandbox

    async def _wait_ready(self, api: cluster.Api, name: str) -> str:
        """The pod's IP once it is Ready (its readiness probe reached the tool API).

        Raises: ImageMissing, BackendError (ended, or not ready in time).
        """

        def ready_ip(pod: Any) -> str | None:
            statuses = (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])
            cluster.check_images(statuses, "sandbox")
            if pod.status.phase in ("Failed", "Succeeded"):
                raise BackendError(
                    f"sandbox pod {name} ended before its tool API answered: "
                    f"{pod.status.reason or _terminated_reasons(statuses)}"
                )
            conditions = {c.type: c.status for c in pod.status.conditions or []}
            return pod.status.pod_ip if conditions.get("Ready") == "True" else None

        return await api.run(
            cluster.watch_pods,
            api,
            {"field_selector": f"metadata.name={name}"},
            ready_ip,
            self._k8s.start_timeout_s,
            f"sandbox pod {name} becoming ready",
        )

    async def stop_sandbox(self, sandbox: Sandbox, *, interrupted: bool) -> None:
        assert isinstance(sandbox, KubernetesSandbox)
        await self.reclaim(sandbox.attempt_id, sandbox.handle)

    async def reclaim(self, attempt_id: str, handle: SandboxHandle | ScoringHandle) -> None:
        owners = reclaimed_owners(attempt_id, handle)
        await self._delete_owned(lambda owner: owner in owners)

    # --- scorer -------------------------------------------------------------------------

    async def run_scorer(self, plan: ScoringPlan, on_event: EventSink) -> HarnessResult:
        api = await self._cluster()
        images = {name: self.image_ref(name) for name in {r.image for r in plan.runs}}
        root = self._scoring / plan.session_id
        root.mkdir(parents=True, exist_ok=True)
        name = f"speedrun-score-{plan.session_id}".lower()
        files: dict[str, bytes] = {}
        keys: dict[str, dict[str, str]] = {}
        for set_name, file_set in plan.file_sets.items():
            keys[set_name] = {}
            for path, text in file_set.items():
                keys[set_name][path] = f"f{len(files)}"
                files[f"{set_name}/{path}"] = text.encode()
        config_map = manifests.config_map(
            name, cluster.labels(plan.session_id, "scorer", self._instance), files
        )
        with cluster.translated("storing the scored files"):
            await api.run(api.core.create_namespaced_config_map, api.namespace, config_map)
        launcher = PodLauncher(api, self._settings, images, plan.session_id, name, keys, plan.gpus)
        try:
            return await run_plan_in_process(
                plan, root, launcher, on_event, backend=self.name, images=images, isolation="pod"
            )
        finally:
            await self._delete_owned(lambda owner: owner == plan.session_id)
            await asyncio.to_thread(shutil.rmtree, root, True)

    # --- leftovers ----------------------------------------------------------------------

    async def cleanup(self, keep: Collection[str]) -> list[str]:
        return await self._delete_owned(lambda owner: owner not in keep)

    async def _delete_owned(self, doomed: Callable[[str], bool]) -> list[str]:
        """Delete our Jobs, pods and ConfigMaps whose owner label ``doomed`` picks; wait until gone."""
        api = await self._cluster()
        found = self._k8s_selector()

        def sweep() -> list[str]:
            from kubernetes.client.exceptions import ApiException

            removed = []
            with cluster.translated("listing labelled resources"):
                jobs = api.batch.list_namespaced_job(api.namespace, label_selector=found).items
                pods = api.core.list_namespaced_pod(api.namespace, label_selector=found).items
                maps = api.core.list_namespaced_config_map(api.namespace, label_selector=found).items
            for job in jobs:
                if doomed(job.metadata.labels.get(cluster.LABELS.owner, "")):
                    delete_job(api, job.metadata.name)
                    removed.append(f"job {job.metadata.name}")
            for kind, items, delete in (
                ("pod", pods, api.core.delete_namespaced_pod),
                ("configmap", maps, api.core.delete_namespaced_config_map),
            ):
                for item in items:
                    if not doomed(item.metadata.labels.get(cluster.LABELS.owner, "")):
                        continue
                    try:
                        delete(item.metadata.name, api.namespace, grace_period_seconds=manifests.KILL_GRACE_S)
                    except ApiException as e:
                        if not cluster.absent(e):
                            raise BackendError(f"deleting {kind} {item.metadata.name}: {e.status}") from e
                    removed.append(f"{kind} {item.metadata.name}")
            _wait_gone(api, found, doomed)
            return removed

        return await api.run(sweep)

    def _k8s_selector(self) -> str:
        return cluster.selector(self._instance)

    async def aclose(self) -> None:
        if self._api is not None:
            await asyncio.to_thread(self._api.close)
            self._api = None


def _terminated_reasons(statuses: list[Any]) -> str:
    done = [s.state.terminated for s in statuses if s.state.terminated is not None]
    return "; ".join(f"{t.reason} (exit {t.exit_code})" for t in done) or "no reason given"


def _wait_gone(api: cluster.Api, found: str, doomed: Callable[[str], bool], timeout_s: float = 60) -> None:
    """Deletion is asynchronous: return once no doomed pod is left (a leak check may follow)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pods = api.core.list_namespaced_pod(api.namespace, label_selector=found).items
        if not [p for p in pods if doomed(p.metadata.labels.get(cluster.LABELS.owner, ""))]:
            return
        time.sleep(0.2)
    raise BackendError(f"pods labelled {found} still present after {timeout_s:.0f}s")
