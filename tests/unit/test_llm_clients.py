"""LLM clients through the real openai and anthropic SDKs against the scripted protocol server.

Must show (3): injected 429 / 500 / slow responses are retried within bounds and then
give up as an infrastructure failure; the API key goes over the wire (the server sees
it) but never into the transcript or a log line. Also: tool calls and tool results make
the round trip on all three protocols, and token counts and cost are accounted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from agent_runtimes.llm.models import ModelProvider, resolve_model
from agent_runtimes.llm.record import AgentRecord
from agent_runtimes.llm.types import Message, ToolSpec
from orchestrator.errors import BudgetExceeded, ConfigError, ModelRequestRejected, ModelUnavailable
from orchestrator.settings import AgentBudget, LlmSettings, ModelSpec
from tests.scripted_llm import Call, Fail, Say, ScriptedServer, Slow, model_entries, scripted_server

KEY = "sk-planted-4b1d9e-never-log-me"
PROTOCOLS = ["scripted-openai", "scripted-responses", "scripted-anthropic"]
ECHO = ToolSpec("echo", "Echo the text back.", {"type": "object", "properties": {"text": {"type": "string"}}})


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as s:
        yield s


def _llm(server: ScriptedServer, **overrides: object) -> LlmSettings:
    models = {name: ModelSpec.model_validate(e) for name, e in model_entries(server.url).items()}
    settings = {
        "models": models,
        "keys": {"openai": SecretStr(KEY), "anthropic": SecretStr(KEY)},
        "retry_base_s": 0.01,
        "retry_max_s": 0.05,
        "max_retries": 3,
        "request_timeout_s": 1.0,
    }
    return LlmSettings.model_validate({**settings, **overrides})


@pytest.mark.parametrize("name", PROTOCOLS)
async def test_tool_call_round_trip_and_accounting(server: ScriptedServer, name: str) -> None:
    server.script(Call.one("echo", text="hi"), Say("done"))
    record = AgentRecord(secrets=(KEY,))
    async with ModelProvider(_llm(server), record) as models:
        chat = models.conversation(name, "You echo.", role="agent")
        chat.add(Message(role="user", content="say hi"))
        first = await chat.ask([ECHO])
        assert [(c.name, c.arguments) for c in first.tool_calls] == [("echo", {"text": "hi"})]
        chat.add(Message(role="tool", content="hi", tool_call_id=first.tool_calls[0].id))
        second = await chat.ask([ECHO])
    assert second.text == "done" and not second.tool_calls
    # the tool result reached the server in the protocol's own shape, answering the right call
    sent = json.dumps(server.requests[-1].body)
    assert first.tool_calls[0].id in sent and '"hi"' in sent
    assert server.requests[0].body["tools"], "tools were offered"
    auth = server.requests[0].headers.get("authorization", "") + server.requests[0].headers.get(
        "x-api-key", ""
    )
    assert KEY in auth, "the key does go to the model API"
    report = record.report()
    usage = report["usage"]
    assert usage["calls"] == 2 and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    expected = (usage["input_tokens"] * 3.0 + usage["output_tokens"] * 15.0) / 1e6
    assert usage["cost_usd"] == pytest.approx(expected)
    kinds = [e["kind"] for e in report["transcript"]]
    assert kinds == ["system", "message", "reply", "message", "reply"]
    assert KEY not in json.dumps(report)


@pytest.mark.parametrize("name", PROTOCOLS)
async def test_429_500_and_timeouts_are_retried_within_bounds(server: ScriptedServer, name: str) -> None:
    server.script(
        Fail(429, "slow down", retry_after=0.01), Fail(500), Slow(2.5, Say("too late")), Say("finally")
    )
    record = AgentRecord(secrets=(KEY,))
    with capture_logs() as logs:
        async with ModelProvider(_llm(server), record) as models:
            chat = models.conversation(name, "sys", role="agent")
            chat.add(Message(role="user", content="hello"))
            reply = await chat.ask()
    assert reply.text == "finally"
    assert len(server.requests) == 4
    retries = [e for e in record.report()["transcript"] if e["kind"] == "retry"]
    assert [r["reason"].split(" (")[0] for r in retries] == ["HTTP 429", "HTTP 500", "APITimeoutError"]
    assert record.report()["usage"]["retries"] == 3
    assert [entry["event"] for entry in logs].count("model call failed; retrying") == 3
    assert KEY not in repr(logs) and KEY not in json.dumps(record.report())


async def test_gives_up_after_the_bound_as_infrastructure(server: ScriptedServer) -> None:
    server.script(*[Fail(503)] * 10)
    record = AgentRecord()
    async with ModelProvider(_llm(server, max_retries=2), record) as models:
        chat = models.conversation("scripted-anthropic", "sys", role="agent")
        chat.add(Message(role="user", content="hello"))
        with pytest.raises(ModelUnavailable, match=r"HTTP 503 .* on each of 3 tries"):
            await chat.ask()
    assert len(server.requests) == 3, "exactly 1 + max_retries tries"


async def test_bad_request_is_not_retried_and_is_the_agents(server: ScriptedServer) -> None:
    server.script(Fail(400, "prompt is too long"), Say("never"))
    async with ModelProvider(_llm(server), AgentRecord()) as models:
        chat = models.conversation("scripted-openai", "sys", role="agent")
        chat.add(Message(role="user", content="hello"))
        with pytest.raises(ModelRequestRejected, match="HTTP 400"):
            await chat.ask()
    assert len(server.requests) == 1


async def test_budget_stops_calls(server: ScriptedServer) -> None:
    server.script(Say("one"), Say("two"))
    record = AgentRecord(budget=AgentBudget(max_tokens=1))
    async with ModelProvider(_llm(server), record) as models:
        chat = models.conversation("scripted-openai", "sys", role="agent")
        chat.add(Message(role="user", content="hello"))
        await chat.ask()
        with pytest.raises(BudgetExceeded, match="token budget spent"):
            await chat.ask()
    assert len(server.requests) == 1


def test_unknown_model_and_missing_key_are_clear() -> None:
    llm = LlmSettings()
    with pytest.raises(ConfigError, match=r"unknown model .gpt-9.; configured: .*gpt-4o"):
        resolve_model(llm, "gpt-9")
    with pytest.raises(ConfigError, match="needs the API key 'anthropic': set SPEEDRUN_LLM__KEYS__ANTHROPIC"):
        resolve_model(llm, "claude-sonnet-4")
    assert llm.models["deepseek-r1"].provider == "openai-compatible"
    assert llm.models["o3-mini"].input_usd_per_mtok > 0
