"""Must show (1): `speedrun run --task tiny-r1-r2 --agent aide --model <scripted>` runs a full
search on the real tiny track: a buggy draft (v_1) is debugged into record 2's script (v_2),
a further improvement (v_3) is buggy again, the best node is submitted, and the scorer
confirms the speedup. The transcript, token counts and cost are stored and shown by
`speedrun attempts show`. The hint (level 2 of a pack written here) and a --knowledge file
reach the coder through the dummy ideator. One scored attempt serves every assertion.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, scored_with_a_speedup
from tests.scripted_llm import Say, config_toml, scripted_server

TINY = REPO / "records" / "tiny"
R1 = (TINY / "r1" / "train_gpt.py").read_text()
R2 = (TINY / "r2" / "train_gpt.py").read_text()
KEY = "sk-planted-a1de-7e57-never-leak"
HINT = "Placeholder hint written for this test: swap learned positions for rotary embeddings."
KNOWLEDGE = "Placeholder background written for this test: rotary embeddings rotate query/key pairs."


def _buggy(script: str, message: str) -> str:
    return f'raise RuntimeError("{message}")\n' + script


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_aide_search_on_tiny_is_scored(speedrun_env: dict[str, str], tmp_path: Path) -> None:
    pack = tmp_path / "hints" / "tiny" / "tiny-r1-r2"
    pack.mkdir(parents=True)
    (pack / "pack.toml").write_text(
        'schema = 1\ntask = "tiny-r1-r2"\nprovenance = "test"\nlicense = "CC0-1.0"\n'
    )
    (pack / "level_2.md").write_text(HINT + "\n")
    knowledge = tmp_path / "notes" / "rope.md"
    knowledge.parent.mkdir()
    knowledge.write_text(KNOWLEDGE + "\n")

    with scripted_server() as server:
        config = tmp_path / "speedrun.toml"
        config.write_text(config_toml(server.url, retry_base_s=0.01, request_timeout_s=30))
        env = {
            **speedrun_env,
            "SPEEDRUN_RECORDS_DIR": str(REPO / "records"),
            "SPEEDRUN_HINTS_DIR": str(tmp_path / "hints"),
            "SPEEDRUN_CONFIG": str(config),
            "SPEEDRUN_LLM__KEYS__ANTHROPIC": KEY,
        }
        server.script(
            Say("Draft:\n```python\n" + _buggy(R1, "scripted bug in the draft") + "```"),
            Say("Fixed:\n```python\n" + R2 + "```"),
            Say("Faster still:\n```python\n" + _buggy(R2, "scripted bug in the improvement") + "```"),
        )
        result = run_cli(
            "run",
            "--task",
            "tiny-r1-r2",
            "--agent",
            "aide",
            "--model",
            "scripted-anthropic",
            "--param",
            "iterations=3",
            "--param",
            "debug_prob=1",
            "--hints",
            "2",
            "--knowledge",
            str(tmp_path / "notes" / "*.md"),
            "--json",
            env=env,
            timeout=1400,
        )
        row = scored_with_a_speedup(result)

        bodies = [json.dumps(r.body) for r in server.requests]
        assert len(bodies) == 3, "the dummy ideator makes no model call; the coder makes three"
        assert HINT in bodies[0] and KNOWLEDGE in bodies[0], "hint and knowledge reach the coder"
        assert "scripted bug in the draft" in bodies[1], "the debug step sees the failure"

        shown = run_cli("attempts", "show", row["attempt_id"], "--json", env=env)
        detail = json.loads(shown.stdout)
        agent = detail["agent_report"]
        nodes = [(n["name"], n["kind"], n["parent"], n["buggy"]) for n in agent["search"]["nodes"]]
        assert nodes == [
            ("v_0", "root", None, False),
            ("v_1", "draft", 0, True),
            ("v_2", "debug", 1, False),
            ("v_3", "improve", 2, True),
        ]
        assert agent["search"]["best"] == 2
        node_versions = [n["workspace_version"] for n in agent["search"]["nodes"][1:]]
        stored = {v["version"] for v in detail["workspace_versions"]}
        assert set(node_versions) <= stored, "every node's workspace version is in the store"
        assert [e["number"] for e in detail["experiments"]] == [0, 1, 2]
        usage = agent["usage"]
        assert usage["calls"] == 3 and usage["input_tokens"] > 0 and usage["cost_usd"] > 0

        text = run_cli("attempts", "show", row["attempt_id"], env=env).stdout
        assert "model: scripted-anthropic: 3 call(s)" in text and "best v_2" in text
        assert "v_2   debug    parent v_1" in text
        for out in (result.stdout, result.stderr, shown.stdout, text):
            assert KEY not in out
