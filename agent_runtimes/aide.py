"""AIDE / best-of-N search over workspace versions, with separate ideator and coder roles.

The search tree: v_0 is record N as given; every other node is a version of the
editable script made by the coder from its parent, written through the tool API and
evaluated by one experiment (time to the target loss). Each step either debugs a
buggy leaf (with probability ``debug_prob``, while its bug depth is below
``max_bug_depth``) or asks for ``hypotheses_per_step`` improvements of the best node
so far; the first step drafts ``initial_hypotheses`` children of v_0. With
``iterations=1`` and many initial hypotheses this is best-of-N.

The ideator proposes what to try: ``llm`` asks a model; ``dummy`` makes the hint the
idea (the upstream "dummy ideator"). The coder reads the brief (goal, hints, knowledge)
and turns an idea into a complete new script. At the end the best node is written back
and submitted. The tree, with each node's workspace version, experiment and metric, is
kept in the attempt's record.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent_runtimes.base import Agent, AgentContext
from agent_runtimes.llm.models import ModelProvider
from agent_runtimes.llm.record import AgentRecord
from agent_runtimes.llm.types import Message
from orchestrator.errors import BudgetExceeded, ConfigError, ToolBudgetExceeded, ToolRefused
from orchestrator.log import get_logger

log = get_logger(__name__)

_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*[ \t]*\n(.*?)```", re.DOTALL)
_ERROR_TAIL = 4000

IDEATOR_SYSTEM = """\
You propose one concrete, testable change that makes a neural network training script
reach its target validation loss in less wall-clock time. Keep the data, the validation
and the protected hyperparameters unchanged. Answer with the idea in a few sentences."""

CODER_SYSTEM = """\
You are an expert ML engineer. You rewrite a training script to implement a given idea,
or to fix a script that failed. Keep the data loading, the validation, the progress
output and the protected hyperparameters unchanged. Reply with the complete new script
in a single fenced code block and nothing else of substance."""


class AideParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    iterations: int = Field(default=5, gt=0)
    """Search steps after v_0."""
    initial_hypotheses: int = Field(default=1, gt=0)
    """Drafts made from v_0 in the first step."""
    hypotheses_per_step: int = Field(default=1, gt=0)
    """Children of the best node made in each improvement step."""
    debug_prob: float = Field(default=0.5, ge=0, le=1)
    """Chance that a step debugs a buggy leaf instead of improving the best node."""
    max_bug_depth: int = Field(default=3, ge=0)
    """A node this many debug steps deep is not debugged further."""
    max_nodes: int = Field(default=20, gt=1)
    """Tree size (v_0 included) at which the search stops."""
    ideator: Literal["llm", "dummy"] = "dummy"
    ideator_model: str | None = None
    """Default: the --model."""
    coder_model: str | None = None
    """Default: the --model."""
    experiment_timeout_s: float | None = Field(default=None, gt=0)
    seed: int = 0


@dataclass
class Node:
    id: int
    parent: int | None
    kind: Literal["root", "draft", "improve", "debug"]
    idea: str
    code: str
    debug_depth: int = 0
    workspace_version: int | None = None
    experiment: int | None = None
    seconds_to_target: float | None = None
    """Sandbox clock, from launch; None for v_0 (not run) and for buggy nodes."""
    buggy: bool = False
    error: str | None = None


def extract_code(reply: str) -> str | None:
    """The last fenced block of a reply (models often show a snippet before the full script)."""
    blocks = _FENCE.findall(reply)
    return blocks[-1] if blocks else None


class Search:
    def __init__(self, ctx: AgentContext, params: AideParams, models: ModelProvider, record: AgentRecord):
        assert ctx.model is not None
        self.ctx = ctx
        self.params = params
        self.models = models
        self.record = record
        self.script = ctx.brief.editable[0]
        self.coder_model = params.coder_model or ctx.model
        self.ideator_model = params.ideator_model or ctx.model
        self.rng = random.Random(params.seed)
        self.nodes: list[Node] = []
        self.ideas_tried: list[str] = []

    # --- tree -----------------------------------------------------------------------

    def _save(self) -> None:
        best = self.best()
        self.record.search = {
            "algorithm": "aide",
            "params": self.params.model_dump(),
            "best": best.id,
            "nodes": [{**asdict(n), "name": f"v_{n.id}", "code_chars": len(n.code)} for n in self.nodes],
        }
        for node in self.record.search["nodes"]:
            node.pop("code")  # contents live in the store's workspace versions

    def best(self) -> Node:
        good = [n for n in self.nodes if n.kind != "root" and not n.buggy and n.seconds_to_target is not None]
        return min(good, key=lambda n: n.seconds_to_target or 0.0) if good else self.nodes[0]

    def _debuggable(self) -> list[Node]:
        parents = {n.parent for n in self.nodes}
        return [
            n
            for n in self.nodes
            if n.buggy and n.id not in parents and n.debug_depth < self.params.max_bug_depth
        ]

    def _full(self) -> bool:
        return len(self.nodes) >= self.params.max_nodes

    # --- roles ----------------------------------------------------------------------

    async def idea(self, base: Node) -> str:
        if self.params.ideator == "dummy":
            # the coder reads the whole brief, hints included: point at it rather than repeat it
            if self.ctx.brief.hints:
                return "Carry out the hint above."
            return "Make the script reach the target validation loss in less time."
        chat = self.models.conversation(self.ideator_model, IDEATOR_SYSTEM, role="ideator")
        tried = "\n".join(f"- {i}" for i in self.ideas_tried) or "- nothing yet"
        chat.add(
            Message(
                role="user",
                content=f"{self.ctx.brief.as_text()}\n\nIdeas already tried:\n{tried}\n\n"
                f"Current best script ({self.script}):\n```python\n{base.code}\n```\n\nPropose one new idea.",
            )
        )
        return (await chat.ask()).text.strip()

    async def code(self, base: Node, idea: str, *, failure: str | None) -> str | None:
        chat = self.models.conversation(self.coder_model, CODER_SYSTEM, role="coder")
        if failure is None:
            ask = (
                f"Implement this idea:\n{idea}\n\n"
                f"In this script ({self.script}):\n```python\n{base.code}\n```"
            )
        else:
            ask = (
                f"This script ({self.script}) was meant to implement:\n{idea}\n\nIt failed:\n```\n"
                f"{failure[-_ERROR_TAIL:]}\n```\n\nFix it. The script:\n```python\n{base.code}\n```"
            )
        chat.add(Message(role="user", content=f"{self.ctx.brief.as_text()}\n\n{ask}"))
        return extract_code((await chat.ask()).text)

    # --- evaluation -----------------------------------------------------------------

    async def evaluate(self, node: Node) -> None:
        tools = self.ctx.tools
        try:
            written = await tools.write_file(self.script, node.code)
        except ToolBudgetExceeded:
            raise
        except ToolRefused as e:
            node.buggy, node.error = True, f"the tool API refused the script: {e}"
            return
        node.workspace_version = written.version
        result = await tools.run_experiment(wait=True, timeout_s=self.params.experiment_timeout_s)
        node.experiment = result.number
        ok = result.reason == "exited" and result.returncode == 0 and result.metrics.reached_target
        if ok:
            node.seconds_to_target = result.metrics.time_to_target_s
        else:
            why = f"{result.reason}, exit code {result.returncode}"
            if result.reason == "exited" and result.returncode == 0:
                why = f"finished without reaching the target loss (last val_loss {result.metrics.val_loss})"
            node.buggy, node.error = True, f"{why}\n{result.log_tail}"

    async def grow(self, parent: Node, kind: Literal["draft", "improve", "debug"]) -> None:
        if kind == "debug":
            idea, failure, depth = parent.idea, parent.error or "", parent.debug_depth + 1
        else:
            idea, failure, depth = await self.idea(parent), None, 0
            self.ideas_tried.append(idea)
        code = await self.code(parent, idea, failure=failure)
        node = Node(
            id=len(self.nodes), parent=parent.id, kind=kind, idea=idea, code=code or "", debug_depth=depth
        )
        self.nodes.append(node)
        if code is None:
            node.buggy, node.error = True, "the coder's reply held no fenced code block"
        else:
            await self.evaluate(node)
        outcome = "buggy" if node.buggy else f"{node.seconds_to_target:.2f}s to target"
        self.record.note(f"v_{node.id} ({kind} of v_{parent.id}): {outcome}", node=node.id)
        log.info("search node evaluated", node=node.id, parent=parent.id, kind=kind, outcome=outcome)
        self._save()

    # --- the loop -------------------------------------------------------------------

    async def run(self) -> None:
        files = await self.ctx.tools.read_file(self.script)
        self.nodes.append(Node(id=0, parent=None, kind="root", idea="record N as given", code=files))
        self._save()
        try:
            for step in range(self.params.iterations):
                if self._full():
                    break
                await self.step(first=step == 0)
        except (BudgetExceeded, ToolBudgetExceeded) as e:
            self.record.note(f"search stopped early: {e}")
        await self.submit_best()

    async def step(self, *, first: bool) -> None:
        if first:
            for _ in range(self.params.initial_hypotheses):
                if self._full():
                    return
                await self.grow(self.nodes[0], "draft")
            return
        debuggable = self._debuggable()
        if debuggable and self.rng.random() < self.params.debug_prob:
            await self.grow(debuggable[-1], "debug")
            return
        best = self.best()
        for _ in range(self.params.hypotheses_per_step):
            if self._full():
                return
            await self.grow(best, "draft" if best.kind == "root" else "improve")

    async def submit_best(self) -> None:
        best = self.best()
        current = await self.ctx.tools.read_file(self.script)
        if current != best.code:
            await self.ctx.tools.write_file(self.script, best.code)
        self.record.note(f"submitting v_{best.id}", node=best.id)
        self._save()
        await self.ctx.tools.submit()


class AideAgent(Agent):
    name: ClassVar[str] = "aide"
    needs_model: ClassVar[bool] = True
    Params: ClassVar[type[BaseModel]] = AideParams

    async def run(self, ctx: AgentContext) -> None:
        if ctx.models is None or ctx.model is None or ctx.record is None:
            raise ConfigError("the aide agent needs a model: pass --model NAME")
        params = ctx.params if isinstance(ctx.params, AideParams) else AideParams()
        await Search(ctx, params, ctx.models, ctx.record).run()
