"""The null agent: submits record N unchanged. Its FSR should come out near 0."""

from __future__ import annotations

from typing import ClassVar

from agent_runtimes.base import Agent, AgentContext


class NullAgent(Agent):
    name: ClassVar[str] = "null"

    async def run(self, ctx: AgentContext) -> None:
        await ctx.tools.list_files()
        await ctx.tools.submit()
