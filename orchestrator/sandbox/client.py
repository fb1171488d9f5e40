"""Async client of the tool API: what agents use, and all they get.

A refusal (403/409/413/422/429/401) becomes the matching ToolRefused subclass,
with the server's message, for the agent to read. A broken connection becomes
SandboxLost: an infrastructure failure, never something the agent sees as output.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from orchestrator import errors
from orchestrator.sandbox.api import (
    API_PREFIX,
    ApplyPatch,
    ErrorBody,
    Experiment,
    ExperimentLog,
    FileContent,
    FileList,
    RunExperiment,
    SubmitResult,
    WriteFile,
    WriteResult,
)
from orchestrator.sandbox.transport import async_client

M = TypeVar("M", bound=BaseModel)


def _refusal_classes() -> dict[str, type[errors.ToolRefused]]:
    found: dict[str, type[errors.ToolRefused]] = {}
    pending: list[type[errors.ToolRefused]] = [errors.ToolRefused]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


_REFUSALS = _refusal_classes()


def _file_url(path: str) -> str:
    # Escape every character, "/" and "." included, so the HTTP layer never
    # normalises the path: the server sees (and judges) exactly what was asked for.
    return "/files/" + quote(path, safe="")


class ToolClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 60.0) -> None:
        self._http = async_client(
            base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
        )

    async def __aenter__(self) -> ToolClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        json: Any = None,
        params: Any = None,
        timeout: float | Literal["client"] | None = "client",
    ) -> M:
        """``timeout``: seconds, None for none, "client" for the client's own."""
        chosen = self._http.timeout if timeout == "client" else timeout
        try:
            response = await self._http.request(
                method, API_PREFIX + path, json=json, params=params, timeout=chosen
            )
        except httpx.TransportError as e:
            raise errors.SandboxLost(f"tool API unreachable: {type(e).__name__}: {e}") from e
        if response.is_success:
            return model.model_validate_json(response.content)
        if response.status_code >= 500:  # the server broke: ours to fix, never the agent's fault
            raise errors.SandboxLost(f"tool API failed with {response.status_code}: {response.text[:500]}")
        try:
            body = ErrorBody.model_validate_json(response.content)
        except ValidationError:
            raise errors.SandboxLost(
                f"tool API answered {response.status_code} without an error body"
            ) from None
        refusal = _REFUSALS.get(body.error, errors.ToolRefused)(body.message)
        refusal.code = body.error  # keep the server's code also where no subclass names it
        raise refusal

    async def list_files(self) -> FileList:
        return await self._call("GET", "/files", FileList)

    async def read_file(self, path: str) -> str:
        return (await self._call("GET", _file_url(path), FileContent)).content

    async def write_file(self, path: str, content: str) -> WriteResult:
        body = WriteFile(content=content).model_dump()
        return await self._call("PUT", _file_url(path), WriteResult, json=body)

    async def apply_patch(self, diff: str) -> WriteResult:
        return await self._call("POST", "/patch", WriteResult, json=ApplyPatch(diff=diff).model_dump())

    async def run_experiment(self, *, wait: bool = True, timeout_s: float | None = None) -> Experiment:
        body = RunExperiment(wait=wait, timeout_s=timeout_s).model_dump()
        return await self._call("POST", "/experiments", Experiment, json=body, timeout=None if wait else 60.0)

    async def experiment(self, number: int) -> Experiment:
        return await self._call("GET", f"/experiments/{number}", Experiment)

    async def experiment_log(self, number: int, offset: int = 0) -> ExperimentLog:
        return await self._call("GET", f"/experiments/{number}/log", ExperimentLog, params={"offset": offset})

    async def submit(self) -> SubmitResult:
        return await self._call("POST", "/submit", SubmitResult)
