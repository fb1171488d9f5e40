"""One scorer run in its own fresh container, timed from outside it.

The container is created from the pristine image with only the run's files
(pristine record files plus the submitted ones) bind-mounted read-only. Output is
attached before the start and every line is timestamped here, on arrival, with
this process's clock. On the target line, a timeout or an output flood the
container is killed before anything is read back; an OOM kill by the kernel is
read from the engine's state and reported as the memory limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.backends.docker import engine, hardening
from orchestrator.log import get_logger
from orchestrator.runtime.process import (
    ExitReason,
    LineWatcher,
    OutputLines,
    ProcessLimits,
    ProcessResult,
)
from orchestrator.scorer.harness import fresh_home
from orchestrator.scorer.plan import PlannedRun
from orchestrator.settings import DockerSettings

log = get_logger(__name__)

_CODE = "/code"
_HOME = "/tmp/home"
_DRAIN_S = 2.0


class ContainerLauncher:
    """The harness's Launcher for the docker backend (one container per run)."""

    def __init__(
        self,
        client: Any,
        settings: DockerSettings,
        images: Mapping[str | None, str],
        session_id: str,
        data_dir: Path,
        instance: str,
    ) -> None:
        self._client = client
        self._settings = settings
        self._images = images
        self._session = session_id
        self._data_dir = data_dir
        self._instance = instance

    async def __call__(
        self,
        run: PlannedRun,
        work: Path,
        env: dict[str, str],
        limits: ProcessLimits,
        label: str,
        on_line: LineWatcher,
    ) -> ProcessResult:
        argv = [hardening.IMAGE_PYTHON if a == "{python}" else a for a in run.argv]
        full_env = {**env, **fresh_home(_HOME), "PATH": hardening.IMAGE_PATH, "LANG": "C.UTF-8"}
        memory = limits.memory_bytes or 8 * 1024**3
        args = hardening.container_args(
            self._settings,
            memory_bytes=memory,
            labels=engine.labels(self._session, "scorer", self._instance, **{engine.LABEL_RUN: label}),
            tmpfs={"/tmp": hardening.tmpfs_options(self._settings)},
        )
        mounts = [
            hardening.bind(work / "code", _CODE, read_only=True),
            *hardening.data_mounts(env, self._data_dir),
        ]

        def create() -> Any:
            with engine.translated(f"creating the scorer container for {run.label}"):
                return engine.create_container(
                    self._client,
                    self._images[run.image],
                    argv,
                    environment=full_env,
                    working_dir=_CODE,
                    mounts=mounts,
                    name=f"speedrun-score-{self._session}-{run.label}"[:120],
                    **args,
                )

        container = await asyncio.to_thread(create)
        try:
            return await _watch(container, limits, work / "output.log", on_line)
        finally:
            await asyncio.to_thread(engine.remove, container)


async def _watch(
    container: Any, limits: ProcessLimits, log_path: Path, on_line: LineWatcher
) -> ProcessResult:
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
    with engine.translated("attaching to the scorer container"):
        stream = container.attach(stdout=True, stderr=True, stream=True, logs=True)

    def pump() -> None:
        try:
            for chunk in stream:
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)
        except Exception as e:  # the stream breaks when the container is removed
            log.debug("scorer output stream ended", error=str(e))
        finally:
            loop.call_soon_threadsafe(chunks.put_nowait, None)

    reader = threading.Thread(target=pump, name="scorer-output", daemon=True)
    reader.start()
    with log_path.open("wb") as log_file:
        start = time.monotonic()
        with engine.translated("starting the scorer container"):
            await asyncio.to_thread(container.start)
        output = OutputLines(limits, log_file, start)
        reason = await _follow(chunks, output, limits, start, on_line)
        if reason is not ExitReason.EXITED:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(container.kill)
        wall_s = time.monotonic() - start
        state = await asyncio.to_thread(_final_state, container)
    if reason is ExitReason.EXITED and state.get("OOMKilled"):
        reason = ExitReason.MEMORY_LIMIT
    returncode = state.get("ExitCode") if reason is ExitReason.EXITED else None
    return ProcessResult(
        reason=reason,
        returncode=returncode,
        wall_s=wall_s,
        output_bytes=output.total,
        tail=output.tail(),
        peak_rss_bytes=0,
    )


async def _follow(
    chunks: asyncio.Queue[bytes | None],
    output: OutputLines,
    limits: ProcessLimits,
    start: float,
    on_line: LineWatcher,
) -> ExitReason:
    deadline = start + limits.timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return ExitReason.TIMED_OUT
        try:
            chunk = await asyncio.wait_for(chunks.get(), timeout=remaining)
        except TimeoutError:
            return ExitReason.TIMED_OUT
        lines = output.flush() if chunk is None else output.feed(chunk)
        if output.total > limits.max_output_bytes:
            return ExitReason.OUTPUT_LIMIT
        for line in lines:
            if on_line(line):
                return ExitReason.STOPPED
        if chunk is None:
            return ExitReason.EXITED


def _final_state(container: Any) -> dict[str, Any]:
    """The container's state once it has stopped (it was killed or exited)."""
    with contextlib.suppress(Exception):
        container.wait(timeout=_DRAIN_S + 30)
    with engine.translated("inspecting the scorer container"):
        container.reload()
    return dict(container.attrs.get("State") or {})
