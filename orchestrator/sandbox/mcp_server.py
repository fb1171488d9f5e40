"""The tool API served as an MCP server, so MCP-capable coding agents work under the same rules.

It is a thin front end: each MCP tool (orchestrator/sandbox/tools.py) calls the sandbox's
tool API over HTTP with the attempt's agent token, so every rule, limit, refusal and
journal entry is the tool API's own. A refusal is an MCP tool error whose text is
``refused (<code>): <message>``, the code and message an HTTP client gets. A lost
sandbox ends the server (infrastructure), never a tool result.

Run over stdio, as MCP clients launch servers:

    SPEEDRUN_TOOL_TOKEN=... speedrun-mcp --url http://127.0.0.1:PORT
    (or: python -m orchestrator.sandbox.mcp_server --url ...)

The token comes from the environment, never argv (visible to every process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from orchestrator.errors import ToolRefused
from orchestrator.sandbox.client import ToolClient
from orchestrator.sandbox.tools import TOOLS, invoke, refusal_text

TOKEN_ENV = "SPEEDRUN_TOOL_TOKEN"


def build_server(client: ToolClient) -> Any:
    """An MCP server (the ``mcp`` package, in the ``llm`` extra) over one tool API client."""
    import mcp.types as types
    from mcp.server.lowlevel import Server

    server: Server = Server(
        "speedrun-tools", instructions="Work the task only through these tools; submit last."
    )

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [types.Tool(name=t.name, description=t.description, inputSchema=t.schema) for t in TOOLS]

    # our own argument check (tools.invoke) answers bad arguments, as for every other front end
    @server.call_tool(validate_input=False)
    async def call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        try:
            text = await invoke(client, name, arguments or {})
        except ToolRefused as e:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=refusal_text(e))], isError=True
            )
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=False)

    return server


async def serve_stdio(url: str, token: str) -> None:
    from mcp.server.stdio import stdio_server

    async with ToolClient(url, token) as client, stdio_server() as (read, write):
        server = build_server(client)
        await server.run(read, write, server.create_initialization_options())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The speedrun tool API as an MCP server (stdio).")
    parser.add_argument("--url", required=True, help="Base URL of the sandbox's tool API.")
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        sys.exit(f"set {TOKEN_ENV} to the attempt's agent token")
    asyncio.run(serve_stdio(args.url, token))


if __name__ == "__main__":
    main()
