"""One scorer run as a Job with one fresh pod, timed from outside it.

The pod holds the run's files read-only (a ConfigMap) and the track data read-only (a
claim), nothing else of ours. Its log is followed through the API server and every
line is timestamped here, on arrival, with this process's clock. On the target line,
a timeout or an output flood the Job is deleted before anything is read back; an OOM
kill is read from the container's terminated state and reported as the memory limit.
A pod lost to a disruption is replaced by the Job (podFailurePolicy): the run starts
over in the new pod and is timed from there.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.backends.kubernetes import cluster, manifests
from orchestrator.errors import BackendError
from orchestrator.images import IMAGE_PYTHON
from orchestrator.log import get_logger
from orchestrator.runtime.process_group import (
    ExitReason,
    LineWatcher,
    OutputLines,
    ProcessLimits,
    ProcessResult,
    with_python,
)
from orchestrator.scorer.harness import Launch, fresh_home
from orchestrator.scorer.watcher import follow, stream_chunks
from orchestrator.settings import Settings

log = get_logger(__name__)

_HOME = "/tmp/home"
_POLL_S = 0.2


class PodLauncher:
    """The harness's Launcher for the kubernetes backend (one Job per run)."""

    def __init__(
        self,
        api: cluster.Api,
        settings: Settings,
        images: Mapping[str | None, str],
        session_id: str,
        files_config_map: str,
        file_keys: Mapping[str, Mapping[str, str]],
        gpus: int,
    ) -> None:
        self._api = api
        self._settings = settings.kubernetes
        self._images = images
        self._session = session_id
        self._config_map = files_config_map
        self._keys = file_keys
        self._data_dir = settings.data_dir
        self._instance = settings.instance_id
        self._gpus = gpus
        self._memory_bytes = settings.scorer.memory_bytes
        """A pod always has a memory limit: a plan without one gets the scorer's default."""

    async def __call__(self, launch: Launch) -> ProcessResult:
        run, env, limits, label = launch.run, launch.env, launch.limits, launch.label
        argv = with_python(run.argv, IMAGE_PYTHON)
        # the process label ends in the run's own ("r0-baseline", "warmup"); DNS-1123 names
        run_name = re.sub(r"[^a-z0-9-]+", "-", label.rsplit("/", 1)[-1].lower()).strip("-")
        name = f"speedrun-score-{self._session}-{run_name}"[:63].rstrip("-")
        keys = self._keys[run.files]
        job = manifests.run_job(
            name=name,
            labels=cluster.labels(self._session, "scorer", self._instance, **{cluster.LABELS.run: run_name}),
            image=self._images[run.image],
            argv=argv,
            env={**env, **fresh_home(_HOME)},
            config_map_name=self._config_map,
            items=[{"key": key, "path": path} for path, key in keys.items()],
            memory_bytes=(limits.memory_bytes or self._memory_bytes) + self._settings.memory_headroom_bytes,
            gpus=self._gpus,
            deadline_s=limits.timeout_s + self._settings.start_timeout_s,
            data_files=manifests.data_files(env, self._data_dir),
            settings=self._settings,
        )
        api = self._api
        with cluster.translated(f"creating the scorer Job of {label}"):
            await api.run(api.batch.create_namespaced_job, api.namespace, job)
        try:
            return await _watch(
                api, name, limits, launch.work / "output.log", launch.on_line, self._settings.start_timeout_s
            )
        finally:
            await api.run(delete_job, api, name)


def delete_job(api: cluster.Api, name: str) -> None:
    """Delete a Job and its pods at once; already gone is fine."""
    from kubernetes.client.exceptions import ApiException

    try:
        api.batch.delete_namespaced_job(
            name, api.namespace, propagation_policy="Foreground", grace_period_seconds=manifests.KILL_GRACE_S
        )
    except ApiException as e:
        if not cluster.absent(e):
            raise BackendError(f"deleting Job {name}: {e.status} {e.reason}") from e


async def _watch(
    api: cluster.Api,
    job: str,
    limits: ProcessLimits,
    log_path: Path,
    on_line: LineWatcher,
    start_timeout_s: float,
) -> ProcessResult:
    start = time.monotonic()
    followed: set[str] = set()
    with log_path.open("wb") as log_file:
        while True:
            pod = await _started_pod(api, job, start_timeout_s, followed)
            followed.add(pod)
            output = OutputLines(limits, log_file, start)
            reason = await _follow(api, pod, output, limits, start, on_line)
            if reason is not ExitReason.EXITED:
                break
            state = await api.run(_terminated, api, pod)
            if state.get("disrupted"):  # the Job makes a new pod: the run starts over there
                log.warning("scorer pod disrupted; the run starts over", pod=pod)
                start = time.monotonic()
                continue
            break
        wall_s = time.monotonic() - start
    returncode = None
    if reason is ExitReason.EXITED:  # type: ignore[used-before-def]  # set before every way out of the loop
        if state.get("reason") == "OOMKilled":
            reason = ExitReason.MEMORY_LIMIT
        else:
            returncode = state.get("exit_code")
    return output.result(reason, returncode, wall_s)


async def _started_pod(api: cluster.Api, job: str, timeout_s: float, done: set[str]) -> str:
    """A pod of the Job, not one of ``done``, once its container has started (its log can be
    followed), seen through the API's watch."""

    def started(pod: Any) -> str | None:
        if pod.metadata.name in done:
            return None
        cluster.check_images(pod.status.container_statuses or [], "scorer")
        for status in pod.status.container_statuses or []:
            if status.state.running is not None or status.state.terminated is not None:
                return str(pod.metadata.name)
        return None

    return await api.run(
        cluster.watch_pods,
        api,
        {"label_selector": f"job-name={job}"},
        started,
        timeout_s,
        f"the scorer pod of Job {job} starting",
    )


async def _follow(
    api: cluster.Api, pod: str, output: OutputLines, limits: ProcessLimits, start: float, on_line: LineWatcher
) -> ExitReason:
    with cluster.translated(f"following the log of {pod}"):
        stream = await api.run(
            api.core.read_namespaced_pod_log,
            pod,
            api.namespace,
            container="run",
            follow=True,
            _preload_content=False,
        )
    chunks = stream_chunks(stream.stream(64 * 1024), name="scorer-log", close=stream.close)
    try:
        return await follow(chunks, output, start + limits.timeout_s, on_line)
    finally:
        # The pump may be blocked reading a run that went quiet. Closing the response here
        # would wait for that read (it holds the buffer's lock) until the Job's deadline;
        # shutting the socket down ends the read now, and the pump closes the response.
        with contextlib.suppress(Exception):
            stream.shutdown()


def _terminated(api: cluster.Api, pod: str) -> dict[str, Any]:
    """Exit code and reason of the run's container once it stopped; whether a disruption took it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with cluster.translated(f"reading pod {pod}"):
            found = api.core.read_namespaced_pod(pod, api.namespace)
        conditions = {c.type: c.status for c in found.status.conditions or []}
        for status in found.status.container_statuses or []:
            done = status.state.terminated
            if done is not None:
                return {
                    "exit_code": done.exit_code,
                    "reason": done.reason,
                    "disrupted": conditions.get("DisruptionTarget") == "True",
                }
        time.sleep(_POLL_S)
    raise BackendError(f"scorer pod {pod} ended its log but not its container")
