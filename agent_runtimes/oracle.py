"""The oracle: writes record N+1's files through the tool API and submits.

It proves a task is solvable in our harness; its FSR should come out near 1.
"""

from __future__ import annotations

from typing import ClassVar

from agent_runtimes.base import Agent, AgentContext


class OracleAgent(Agent):
    name: ClassVar[str] = "oracle"
    needs_reference: ClassVar[bool] = True

    async def run(self, ctx: AgentContext) -> None:
        assert ctx.reference_files is not None, "the orchestrator hands the oracle record N+1"
        editable = set(ctx.brief.editable)
        for path, data in sorted(ctx.reference_files().items()):
            if path in editable:
                await ctx.tools.write_file(path, data.decode("utf-8"))
        await ctx.tools.submit()
