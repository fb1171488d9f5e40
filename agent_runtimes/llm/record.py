"""What an agent's model use leaves behind: the transcript, token counts, cost, budget checks.

One ``AgentRecord`` per attempt. The orchestrator stores ``report()`` with the attempt
whether the agent submitted or not. Known secrets are scrubbed from everything recorded
(defence in depth: keys are never put into messages in the first place).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agent_runtimes.llm.types import Message, Reply
from orchestrator.errors import BudgetExceeded
from orchestrator.settings import AgentBudget, ModelSpec

_REDACTED = "[redacted]"


@dataclass
class ModelUsage:
    calls: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class AgentRecord:
    budget: AgentBudget = field(default_factory=AgentBudget)
    secrets: tuple[str, ...] = ()
    transcript: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, ModelUsage] = field(default_factory=dict)
    """By model name."""
    search: dict[str, Any] | None = None
    """Search agents: their tree of workspace versions (nodes, parents, metrics)."""

    # --- budget ---------------------------------------------------------------------

    @property
    def total_tokens(self) -> int:
        return sum(u.input_tokens + u.output_tokens for u in self.usage.values())

    @property
    def total_cost_usd(self) -> float:
        return sum(u.cost_usd for u in self.usage.values())

    def check_budget(self) -> None:
        """Raises: BudgetExceeded once the attempt has used its tokens or money."""
        b = self.budget
        if b.max_tokens is not None and self.total_tokens >= b.max_tokens:
            raise BudgetExceeded(f"token budget spent: {self.total_tokens} of {b.max_tokens} tokens used")
        if b.max_cost_usd is not None and self.total_cost_usd >= b.max_cost_usd:
            raise BudgetExceeded(
                f"cost budget spent: ${self.total_cost_usd:.4f} of ${b.max_cost_usd:.4f} used"
            )

    # --- recording ------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, _REDACTED)
        return text

    def _entry(self, **fields: Any) -> None:
        clean = {k: self.scrub(v) if isinstance(v, str) else v for k, v in fields.items()}
        self.transcript.append({"seq": len(self.transcript), "at": time.time(), **clean})

    def system(self, conversation: str, role: str, model: str, text: str) -> None:
        self._entry(conversation=conversation, agent_role=role, model=model, kind="system", content=text)

    def messages(self, conversation: str, role: str, model: str, messages: Iterable[Message]) -> None:
        for m in messages:
            d = m.as_dict()
            d["content"] = self.scrub(d["content"])
            self._entry(conversation=conversation, agent_role=role, model=model, kind="message", **d)

    def reply(self, conversation: str, role: str, model_name: str, spec: ModelSpec, reply: Reply) -> None:
        u = self.usage.setdefault(model_name, ModelUsage())
        u.calls += 1
        u.input_tokens += reply.usage.input_tokens
        u.output_tokens += reply.usage.output_tokens
        cost = (
            reply.usage.input_tokens * spec.input_usd_per_mtok
            + reply.usage.output_tokens * spec.output_usd_per_mtok
        ) / 1e6
        u.cost_usd += cost
        d = reply.as_message().as_dict()
        d["content"] = self.scrub(d["content"])
        self._entry(
            conversation=conversation,
            agent_role=role,
            model=model_name,
            kind="reply",
            input_tokens=reply.usage.input_tokens,
            output_tokens=reply.usage.output_tokens,
            cost_usd=cost,
            stop_reason=reply.stop_reason,
            **d,
        )

    def retry(self, model_name: str, conversation: str, reason: str, delay_s: float) -> None:
        self.usage.setdefault(model_name, ModelUsage()).retries += 1
        self._entry(conversation=conversation, model=model_name, kind="retry", reason=reason, delay_s=delay_s)

    def note(self, text: str, **fields: Any) -> None:
        self._entry(kind="note", content=text, **fields)

    def report(self) -> dict[str, Any]:
        return {
            "usage": {
                "input_tokens": sum(u.input_tokens for u in self.usage.values()),
                "output_tokens": sum(u.output_tokens for u in self.usage.values()),
                "cost_usd": round(self.total_cost_usd, 8),
                "calls": sum(u.calls for u in self.usage.values()),
                "retries": sum(u.retries for u in self.usage.values()),
                "by_model": {name: vars(u) for name, u in self.usage.items()},
            },
            "budget": self.budget.model_dump(),
            "transcript": self.transcript,
            "search": self.search,
        }
