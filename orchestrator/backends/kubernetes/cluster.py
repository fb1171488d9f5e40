"""The Kubernetes API seen through the kubernetes client: connection, error translation, labels.

The client is synchronous; callers run its calls in the backend's own worker threads
(``Api.run``). Every API error is translated here into our infrastructure errors:
never the agent's or the submission's fault.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator.backends.base import ResourceLabels
from orchestrator.errors import BackendError, ClusterUnavailable, ImageMissing
from orchestrator.settings import KubernetesSettings

T = TypeVar("T")

LABELS = ResourceLabels("speedrun.io/")
labels = LABELS.of


@dataclass(frozen=True)
class Api:
    core: Any
    batch: Any
    namespace: str
    threads: ThreadPoolExecutor
    """Ours alone: a wait on a pending pod blocks its thread for minutes, and in the event
    loop's default pool (a few threads per core) a full GPU pool's waits would stall
    every other blocking call of the process, the deletes that would free GPUs too."""

    async def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call(*args, **kwargs)`` in one of the API's threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.threads, functools.partial(call, *args, **kwargs))

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)
        self.core.api_client.close()


def selector(instance: str, **more: str) -> str:
    pairs = {**LABELS.ours(instance), **more}
    return ",".join(f"{k}={v}" for k, v in pairs.items())


def connect(settings: KubernetesSettings) -> Api:
    """The configured cluster: a kubeconfig when one is named, else the pod's service account.

    Raises: ClusterUnavailable (client not installed, no configuration, API server down).
    """
    try:
        from kubernetes import client, config
    except ImportError as e:
        raise ClusterUnavailable(
            "the kubernetes backend needs its client: pip install 'speedrun-orchestrator[kubernetes]'"
        ) from e
    try:
        configuration = client.Configuration()
        if settings.kubeconfig is not None:
            config.load_kube_config(
                str(settings.kubeconfig), context=settings.context, client_configuration=configuration
            )
        else:
            config.load_incluster_config(client_configuration=configuration)
        # a connection for each thread: the client's default (5 per core) would open and
        # drop surplus connections whenever more calls than that are under way
        configuration.connection_pool_maxsize = settings.api_threads
        api_client = client.ApiClient(configuration)
        core = client.CoreV1Api(api_client)
        core.list_namespaced_pod(settings.namespace, limit=1)
    except config.ConfigException as e:
        raise ClusterUnavailable(f"no Kubernetes configuration: {e}") from e
    except Exception as e:
        raise ClusterUnavailable(f"Kubernetes API unreachable or refusing ({_brief(e)})") from e
    return Api(
        core=core,
        batch=client.BatchV1Api(api_client),
        namespace=settings.namespace,
        threads=ThreadPoolExecutor(settings.api_threads, thread_name_prefix="kubernetes-api"),
    )


@contextmanager
def translated(action: str) -> Iterator[None]:
    """API and connection errors raised inside become BackendError subclasses."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as e:
        raise BackendError(f"{action}: {_brief(e)}") from e
    except (HTTPError, OSError) as e:
        raise ClusterUnavailable(f"{action}: Kubernetes API unreachable: {e}") from e


_PULL_FAILURES = ("ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName")


def check_images(statuses: list[Any], what: str) -> None:
    """Raises ImageMissing when a container of ``what`` waits on an image it cannot get."""
    for status in statuses:
        waiting = status.state.waiting
        if waiting is not None and waiting.reason in _PULL_FAILURES:
            raise ImageMissing(
                f"{what} image {status.image} is not available to the node ({waiting.reason}): "
                "load or push it (speedrun images build/push)"
            )


def absent(e: BaseException) -> bool:
    """True for the API's 404: the object is already gone."""
    return getattr(e, "status", None) == 404


def _brief(e: BaseException) -> str:
    status, reason, body = (getattr(e, k, None) for k in ("status", "reason", "body"))
    if status is None:
        return str(e)[:500]
    return f"{status} {reason}: {str(body or '')[:500]}"


def watch_pods(
    api: Api, selector: dict[str, str], until: Callable[[Any], T | None], timeout_s: float, what: str
) -> T:
    """Follow pods through the API's watch until ``until(pod)`` returns a value; return it.

    ``selector``: ``field_selector`` and/or ``label_selector``. Runs in a worker thread
    (the client blocks). ``until`` may raise to end the wait early (an image that cannot
    be pulled, a pod that failed). Raises BackendError after ``timeout_s``.
    """
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout_s
    with translated(f"watching {what}"):
        while (left := deadline - time.monotonic()) > 0:
            # list first: the state before the watch starts counts too
            listed = api.core.list_namespaced_pod(api.namespace, **selector)
            for pod in listed.items:
                if (found := until(pod)) is not None:
                    return found
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    api.core.list_namespaced_pod,
                    api.namespace,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=max(1, int(left)),
                    **selector,
                ):
                    if event["type"] not in ("ADDED", "MODIFIED"):
                        continue
                    if (found := until(event["object"])) is not None:
                        stream.stop()
                        return found
            except ApiException as e:
                if e.status != 410:  # 410 Gone: the listed version expired; list again
                    raise
    raise BackendError(f"{what}: nothing after {timeout_s:.0f}s")
