"""What an agent is: something that works a task through the tool API, and nothing else.

Agents register in the ``speedrun.agents`` entry-point group, so a third-party
agent is a pip install away. An agent gets a brief (the task as text) and a tool
API client; it ends by calling ``submit`` or by returning without a submission.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from orchestrator.plugins import load_plugin, plugin_names
from orchestrator.sandbox.client import ToolClient

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


@dataclass(frozen=True)
class AgentContext:
    brief: TaskBrief
    tools: ToolClient
    reference_files: Callable[[], Mapping[str, bytes]] | None = None
    """Record N+1's files: handed only to agents that declare ``needs_reference``."""


class Agent(abc.ABC):
    name: ClassVar[str]
    needs_reference: ClassVar[bool] = False
    """True only for task-checking agents (the oracle); never for agents under evaluation."""

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
