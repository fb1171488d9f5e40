"""Opening catalog models with their keys, calling them with bounded retries, and conversations.

``ModelProvider`` is what an agent gets: it opens models by catalog name and holds
the keys, so an agent never sees one. ``ChatModel.complete`` retries 429, 5xx,
timeouts and dropped connections with exponential backoff (bounded by
``llm.max_retries``), checks the attempt's budget before every call, and records
usage, cost and every message in the attempt's ``AgentRecord``.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

from agent_runtimes.llm.protocols import PROTOCOLS, WireProtocol
from agent_runtimes.llm.record import AgentRecord
from agent_runtimes.llm.types import Message, Reply, ToolSpec
from orchestrator.errors import ConfigError, ModelRequestRejected, ModelUnavailable
from orchestrator.log import get_logger
from orchestrator.settings import LlmSettings, ModelSpec

log = get_logger(__name__)

_RETRY_STATUSES = frozenset({408, 409, 429})
_DEFAULT_KEYS = {"openai": "openai", "openai-responses": "openai", "anthropic": "anthropic"}
_KEYLESS = "none"  # the SDKs insist on some key; keyless servers (a local vLLM) ignore it


def key_name(spec: ModelSpec) -> str | None:
    """The ``llm.keys`` entry a model uses; None for a keyless endpoint."""
    if spec.key is not None:
        return spec.key or None
    return _DEFAULT_KEYS.get(spec.provider)


def resolve_model(llm: LlmSettings, name: str) -> tuple[ModelSpec, str]:
    """The model's spec and API key.

    Raises:
        ConfigError: unknown model name, or its key is not configured.
    """
    spec = llm.models.get(name)
    if spec is None:
        raise ConfigError(f"unknown model {name!r}; configured: {', '.join(sorted(llm.models))}")
    wanted = key_name(spec)
    if wanted is None:
        return spec, _KEYLESS
    secret = llm.keys.get(wanted)
    if secret is None or not secret.get_secret_value():
        raise ConfigError(
            f"model {name!r} needs the API key {wanted!r}: set SPEEDRUN_LLM__KEYS__{wanted.upper()} "
            f"or [llm.keys] {wanted} in the config file"
        )
    return spec, secret.get_secret_value()


def _classify(error: Exception) -> tuple[bool, str, float | None]:
    """(retryable, short reason, server's Retry-After in seconds) for an SDK error."""
    status = getattr(error, "status_code", None)
    name = type(error).__name__
    if isinstance(status, int):
        retry_after: float | None = None
        response = getattr(error, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        if header:
            try:
                retry_after = float(header)
            except ValueError:
                retry_after = None
        return status in _RETRY_STATUSES or status >= 500, f"HTTP {status} ({name})", retry_after
    if name in {"APITimeoutError", "APIConnectionError"} or isinstance(error, TimeoutError):
        return True, name, None
    return False, f"{name}: {error}", None


class ChatModel:
    def __init__(
        self, name: str, spec: ModelSpec, protocol: WireProtocol, llm: LlmSettings, record: AgentRecord
    ) -> None:
        self.name = name
        self.spec = spec
        self._protocol = protocol
        self._llm = llm
        self._record = record

    async def complete(
        self, system: str, messages: list[Message], tools: list[ToolSpec], *, conversation: str, role: str
    ) -> Reply:
        """One model call, retried within bounds.

        Raises:
            BudgetExceeded: the attempt's tokens or money are spent.
            ModelUnavailable: still failing after ``llm.max_retries`` retries, or the key was refused.
            ModelRequestRejected: the API refused the request itself (e.g. too long).
        """
        self._record.check_budget()
        attempts = self._llm.max_retries + 1
        for attempt in range(attempts):
            try:
                reply = await self._protocol.send(system, messages, tools)
            except Exception as e:
                retryable, reason, retry_after = _classify(e)
                status = getattr(e, "status_code", None)
                if status in (401, 403):
                    raise ModelUnavailable(f"model {self.name}: the API refused our key ({reason})") from e
                if not retryable:
                    raise ModelRequestRejected(f"model {self.name}: {self._record.scrub(reason)}") from e
                if attempt == attempts - 1:
                    raise ModelUnavailable(
                        f"model {self.name}: {reason} on each of {attempts} tries; giving up"
                    ) from e
                delay = min(self._llm.retry_max_s, self._llm.retry_base_s * 2**attempt)
                delay *= 0.5 + random.random() / 2  # jitter: many attempts must not retry in step
                if retry_after is not None:
                    delay = min(self._llm.retry_max_s, max(delay, retry_after))
                self._record.retry(self.name, conversation, reason, round(delay, 3))
                log.warning(
                    "model call failed; retrying",
                    model=self.name,
                    reason=reason,
                    attempt=attempt + 1,
                    of=attempts,
                    delay_s=round(delay, 3),
                )
                await asyncio.sleep(delay)
                continue
            self._record.reply(conversation, role, self.name, self.spec, reply)
            return reply
        raise AssertionError("unreachable")


class Conversation:
    """A system prompt and a growing list of messages with one model, recorded as it goes."""

    def __init__(self, model: ChatModel, record: AgentRecord, system: str, *, role: str) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.model = model
        self.role = role
        self.system = system
        self.messages: list[Message] = []
        self._record = record
        self._recorded = 0
        record.system(self.id, role, model.name, system)

    def add(self, message: Message) -> None:
        self.messages.append(message)

    async def ask(self, tools: list[ToolSpec] | None = None) -> Reply:
        new = self.messages[self._recorded :]
        self._record.messages(self.id, self.role, self.model.name, new)
        self._recorded = len(self.messages)
        reply = await self.model.complete(
            self.system, self.messages, tools or [], conversation=self.id, role=self.role
        )
        self.messages.append(reply.as_message())
        self._recorded = len(self.messages)
        return reply


class ModelProvider:
    """Opens catalog models for one attempt; all share the attempt's record and budget."""

    def __init__(self, llm: LlmSettings, record: AgentRecord) -> None:
        self._llm = llm
        self.record = record
        self._open: dict[str, ChatModel] = {}
        self._protocols: list[WireProtocol] = []

    def model(self, name: str) -> ChatModel:
        """Raises: ConfigError (unknown model, missing key)."""
        if name not in self._open:
            spec, key = resolve_model(self._llm, name)
            protocol = PROTOCOLS[spec.provider](spec, key, self._llm.request_timeout_s)
            self._protocols.append(protocol)
            self._open[name] = ChatModel(name, spec, protocol, self._llm, self.record)
        return self._open[name]

    def conversation(self, model_name: str, system: str, *, role: str) -> Conversation:
        return Conversation(self.model(model_name), self.record, system, role=role)

    async def aclose(self) -> None:
        for protocol in self._protocols:
            await protocol.aclose()

    async def __aenter__(self) -> ModelProvider:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
