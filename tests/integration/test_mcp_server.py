"""The tool API as an MCP server (must show 5): a real MCP client (the `mcp` package, over
stdio) lists and calls the tools of a running local sandbox, and every forbidden operation
is refused exactly as over HTTP: the same error code and message, nothing changed.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from orchestrator.backends.base import Sandbox, SandboxSpec
from orchestrator.backends.local import LocalBackend
from orchestrator.catalog.catalog import Catalog, Task
from orchestrator.catalog.data import ensure_track_data
from orchestrator.errors import ToolRefused
from orchestrator.sandbox.client import ToolClient
from orchestrator.sandbox.mcp_server import TOKEN_ENV
from orchestrator.sandbox.tools import TOOLS, refusal_text
from orchestrator.settings import SandboxLimits, Settings


@pytest.fixture
async def sandbox(settings: Settings, catalog: Catalog, toy_task: Task) -> AsyncIterator[Sandbox]:
    data = ensure_track_data(catalog.track(toy_task.track), settings.data_dir)
    base = toy_task.baseline.manifest
    spec = SandboxSpec(
        attempt_id=f"mcp{uuid.uuid4().hex[:12]}",
        files=toy_task.baseline.read_files(),
        editable=toy_task.editable,
        launch_argv=base.launch.argv("{python}"),
        launch_env={**base.launch.env, **data.env(val_tokens=base.data.val_tokens, heldout=False)},
        target_val_loss=toy_task.target_val_loss,
        limits=SandboxLimits(max_file_bytes=4096),
    )
    async with LocalBackend(settings) as backend:
        box = await backend.start_sandbox(spec)
        try:
            yield box
        finally:
            await backend.stop_sandbox(box, interrupted=False)


@asynccontextmanager
async def mcp_session(sandbox: Sandbox) -> AsyncIterator[ClientSession]:
    """An MCP client session with the server over stdio (entered in the test's own task,
    as the mcp client's cancel scopes require)."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "orchestrator.sandbox.mcp_server", "--url", sandbox.tool_url],
        env={"PATH": os.environ.get("PATH", ""), TOKEN_ENV: sandbox.agent_token},
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def _mcp(session: ClientSession, name: str, **arguments: object) -> tuple[bool, str]:
    result = await session.call_tool(name, arguments)
    [content] = result.content
    assert content.type == "text"
    return bool(result.isError), content.text


async def _http(client: ToolClient, call: str, *args: object) -> str:
    try:
        await getattr(client, call)(*args)
    except ToolRefused as e:
        return refusal_text(e)
    raise AssertionError(f"HTTP {call}{args} was not refused")


FORBIDDEN = [
    ("read_file", {"path": "../../etc/passwd"}, ("read_file", "../../etc/passwd")),
    ("read_file", {"path": "/etc/passwd"}, ("read_file", "/etc/passwd")),
    ("write_file", {"path": "helper.py", "content": "x = 1\n"}, ("write_file", "helper.py", "x = 1\n")),
    ("write_file", {"path": "../escape.py", "content": "x"}, ("write_file", "../escape.py", "x")),
    (
        "write_file",
        {"path": "train_gpt.py", "content": "#" * 5000},
        ("write_file", "train_gpt.py", "#" * 5000),
    ),
    ("apply_patch", {"diff": "not a diff"}, ("apply_patch", "not a diff")),
    ("experiment_log", {"number": 7}, ("experiment_log", 7)),
]


async def test_mcp_client_lists_and_calls_tools_refusing_as_http(sandbox: Sandbox) -> None:
    async with mcp_session(sandbox) as session:
        await _check_tools(session, sandbox)


async def _check_tools(mcp_session: ClientSession, sandbox: Sandbox) -> None:
    listed = await mcp_session.list_tools()
    assert [t.name for t in listed.tools] == [t.name for t in TOOLS]
    write = next(t for t in listed.tools if t.name == "write_file")
    assert set(write.inputSchema["required"]) == {"path", "content"}

    error, text = await _mcp(mcp_session, "list_files")
    assert not error and {f["path"] for f in json.loads(text)["files"]} == {"train_gpt.py", "helper.py"}
    error, text = await _mcp(mcp_session, "read_file", path="train_gpt.py")
    assert not error and "NUM_STEPS = 60" in text

    async with ToolClient(sandbox.tool_url, sandbox.agent_token) as http:
        version = (await http.list_files()).version
        for name, args, (call, *http_args) in FORBIDDEN:
            error, via_mcp = await _mcp(mcp_session, name, **args)
            via_http = await _http(http, call, *http_args)
            assert error, (name, args)
            assert via_mcp == via_http, (name, args)
        assert (await http.list_files()).version == version, "no refused call changed the workspace"

        error, text = await _mcp(mcp_session, "write_file", path="train_gpt.py", content="print('v1')\n")
        assert not error and json.loads(text)["changed"] == ["train_gpt.py"]
        error, text = await _mcp(mcp_session, "no_such_tool")
        assert error and text.startswith("refused (bad_arguments): no tool 'no_such_tool'")
        error, text = await _mcp(mcp_session, "read_file")
        assert error and "path: Field required" in text

        error, text = await _mcp(mcp_session, "submit")
        assert not error and "train_gpt.py" in json.loads(text)["files"]
        error, after_mcp = await _mcp(mcp_session, "list_files")
        assert error and after_mcp == await _http(http, "list_files")
        assert after_mcp.startswith("refused (already_submitted)")

    journal = await sandbox.journal(-1, -1)
    statuses = [(c.op, c.status) for c in journal.calls]
    assert ("write_file", 403) in statuses and ("submit", 200) in statuses, "MCP calls are journaled"
