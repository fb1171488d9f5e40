"""Must show (2): `speedrun run --task tiny-r1-r2 --agent tool-calling --model <scripted>` on the
real tiny track, once per wire protocol (OpenAI chat completions, Anthropic messages): the
model reads record 1, writes record 2's script through the tool API and submits; the scorer
confirms the speedup; transcript, token counts and cost are stored and shown by
`speedrun attempts show`. (The toy-track tests in test_llm_agents.py cover the responses
protocol, refusals, retries and the missing submit.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, scored_with_a_speedup
from tests.scripted_llm import Call, config_toml, scripted_server

R2 = (REPO / "records" / "tiny" / "r2" / "train_gpt.py").read_text()
KEY = "sk-planted-7001-ca11-never-leak"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("model", ["scripted-openai", "scripted-anthropic"])
def test_tool_calling_agent_on_tiny_is_scored(
    speedrun_env: dict[str, str], tmp_path: Path, model: str
) -> None:
    with scripted_server() as server:
        config = tmp_path / "speedrun.toml"
        config.write_text(config_toml(server.url, retry_base_s=0.01, request_timeout_s=30))
        env = {
            **speedrun_env,
            "SPEEDRUN_RECORDS_DIR": str(REPO / "records"),
            "SPEEDRUN_CONFIG": str(config),
            "SPEEDRUN_LLM__KEYS__OPENAI": KEY,
            "SPEEDRUN_LLM__KEYS__ANTHROPIC": KEY,
        }
        server.script(
            Call.one("read_file", path="train_gpt.py"),
            Call.one("write_file", path="train_gpt.py", content=R2),
            Call.one("submit"),
        )
        result = run_cli(
            "run",
            "--task",
            "tiny-r1-r2",
            "--agent",
            "tool-calling",
            "--model",
            model,
            "--json",
            env=env,
            timeout=850,
        )
        row = scored_with_a_speedup(result)

        # the model saw record 1's script in the read_file result before it wrote
        assert "def " in json.dumps(server.requests[1].body) and len(server.requests) == 3

        shown = run_cli("attempts", "show", row["attempt_id"], "--json", env=env)
        agent = json.loads(shown.stdout)["agent"]
        assert agent["model"] == model
        replies = [e for e in agent["transcript"] if e["kind"] == "reply"]
        assert [c["name"] for e in replies for c in e["tool_calls"]] == ["read_file", "write_file", "submit"]
        usage = agent["usage"]
        assert usage["calls"] == 3 and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
        assert usage["cost_usd"] > 0
        text = run_cli("attempts", "show", row["attempt_id"], env=env).stdout
        assert f"model: {model}: 3 call(s)" in text and "cost $" in text
        for out in (result.stdout, result.stderr, shown.stdout, text):
            assert KEY not in out
