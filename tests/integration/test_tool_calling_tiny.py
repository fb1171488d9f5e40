"""Must show (2): the tool-calling agent on the real tiny track over both wire protocols
(OpenAI chat completions, Anthropic messages), as `speedrun batch` runs them: two attempts
side by side, scored in one session against one baseline and reference. Each model reads
record 1, writes record 2's script through the tool API and submits; the scorer confirms
the speedup; transcript, token counts and cost are stored and shown by `speedrun attempts
show`. (test_llm_agents.py covers the responses protocol, refusals, retries and the
missing submit on the toy track.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_scored_with_a_speedup, run_cli
from tests.scripted_llm import Call, config_toml, scripted_server

R2 = (REPO / "records" / "tiny" / "r2" / "train_gpt.py").read_text()
KEY = "sk-planted-7001-ca11-never-leak"
MODELS = ["scripted-openai", "scripted-anthropic"]
BATCH = f"""
name = "protocols"
tasks = ["tiny-r1-r2"]
{"".join(f'[[agents]]{chr(10)}name = "tool-calling"{chr(10)}model = "{m}"{chr(10)}' for m in MODELS)}
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tool_calling_agent_on_tiny_is_scored_over_both_protocols(
    speedrun_env: dict[str, str], tmp_path: Path
) -> None:
    batch = tmp_path / "protocols.toml"
    batch.write_text(BATCH)
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
        turns = (
            Call.one("read_file", path="train_gpt.py"),
            Call.one("write_file", path="train_gpt.py", content=R2),
            Call.one("submit"),
        )
        server.script(*turns, *turns)  # the two agents act one after the other
        result = run_cli("batch", str(batch), "--json", env=env, timeout=850)
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        assert len(rows) == 2 and len(server.requests) == 6
        assert {r["baseline_seconds"] for r in rows} == {rows[0]["baseline_seconds"]}, "one session"
        for row in rows:
            assert_scored_with_a_speedup(row)
        # each model saw record 1's script in its read_file result before it wrote
        assert all("def " in json.dumps(server.requests[i].body) for i in (1, 4))
        assert server.requests[0].path == "/v1/chat/completions" and server.requests[3].path == "/v1/messages"

        models = []
        for row in rows:
            shown = run_cli("attempts", "show", row["attempt_id"], "--json", env=env)
            agent = json.loads(shown.stdout)["agent_report"]
            models.append(agent["model"])
            replies = [e for e in agent["transcript"] if e["kind"] == "reply"]
            assert [c["name"] for e in replies for c in e["tool_calls"]] == [
                "read_file",
                "write_file",
                "submit",
            ]
            usage = agent["usage"]
            assert usage["calls"] == 3 and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
            assert usage["cost_usd"] > 0
            text = run_cli("attempts", "show", row["attempt_id"], env=env).stdout
            assert f"model: {agent['model']}: 3 call(s)" in text and "cost $" in text
            for out in (result.stdout, result.stderr, shown.stdout, text):
                assert KEY not in out
        assert sorted(models) == sorted(MODELS)
