"""What an agent is: something that works a task through the tool API, and nothing else.

Agents register in the ``speedrun.agents`` entry-point group, so a third-party
agent is a pip install away. An agent gets a brief (the task as text) and a tool
API client; it ends by calling ``submit`` or by returning without a submission.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.errors import ConfigError, validation_problems
from orchestrator.plugins import load_plugin, plugin_names
from orchestrator.sandbox.client import ToolClient

if TYPE_CHECKING:  # the LLM runtime needs the `llm` extra; agents without a model never load it
    from agent_runtimes.llm.models import ModelProvider
    from agent_runtimes.llm.record import AgentRecord

ENTRY_POINT_GROUP = "speedrun.agents"


@dataclass(frozen=True)
class TaskBrief:
    task_id: str
    track: str
    goal: str
    editable: list[str]
    target_val_loss: float
    baseline_seconds: float
    hints: list[str] = field(default_factory=list)
    """Hint texts (one per level asked for), from the task's hint pack."""
    knowledge: dict[str, str] = field(default_factory=dict)
    """Background files by name: the pack's knowledge files and those given with --knowledge."""

    def as_text(self) -> str:
        """The brief as a model reads it."""
        parts = [self.goal]
        for i, hint in enumerate(self.hints, 1):
            parts.append(f"## Hint {i}\n\n{hint.strip()}")
        for name, text in self.knowledge.items():
            parts.append(f"## Background: {name}\n\n{text.strip()}")
        return "\n\n".join(parts)


@dataclass(frozen=True)
class AgentContext:
    brief: TaskBrief
    tools: ToolClient
    reference_files: Callable[[], Mapping[str, bytes]] | None = None
    """Record N+1's files: handed only to agents that declare ``needs_reference``."""
    model: str | None = None
    """Catalog name of the model chosen with --model (LLM agents)."""
    params: BaseModel | None = None
    """The agent's parameters, validated against its ``Params``."""
    models: ModelProvider | None = None
    """Opens catalog models; holds the keys, so the agent never does."""
    record: AgentRecord | None = None
    """Transcript, token counts, cost and search tree; stored with the attempt."""


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Agent(abc.ABC):
    name: ClassVar[str]
    needs_reference: ClassVar[bool] = False
    """True only for task-checking agents (the oracle); never for agents under evaluation."""
    needs_model: ClassVar[bool] = False
    Params: ClassVar[type[BaseModel]] = NoParams
    """The agent's parameters (``speedrun run --param KEY=VALUE``)."""

    @classmethod
    def parse_params(cls, raw: Mapping[str, Any]) -> BaseModel:
        """Raises: ConfigError naming each bad or unknown parameter."""
        try:
            return cls.Params.model_validate(dict(raw))
        except ValidationError as e:
            problems = validation_problems(e)
            known = ", ".join(cls.Params.model_fields) or "none"
            raise ConfigError(
                f"agent {cls.name!r}: bad parameters: {problems} (parameters: {known})"
            ) from None

    @abc.abstractmethod
    async def run(self, ctx: AgentContext) -> None:
        """Work the task through ``ctx.tools``; submit to finish.

        Raises:
            ToolRefused: a refused tool call the agent chose not to handle.
            SandboxLost: the sandbox died (infrastructure; the orchestrator handles it).
        """


def available_agents() -> list[str]:
    return plugin_names(ENTRY_POINT_GROUP)


def create_agent(name: str) -> Agent:
    """Raises: ConfigError for an unknown agent name."""
    return load_plugin(ENTRY_POINT_GROUP, name, Agent)()
