"""The tool API as named tools with JSON-schema arguments: one definition for every front end.

Tool-calling agents offer these to a model; the MCP server (mcp_server.py) offers the
same to MCP clients. Each tool calls the tool API through ToolClient, so every rule and
refusal is the HTTP server's own: a refusal comes back as ``refused (<code>): <message>``,
the same code and message an HTTP client gets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.errors import ToolRefused, validation_problems
from orchestrator.sandbox.client import ToolClient

RESULT_CAP = 32_000  # characters of one tool result handed back (logs have their own offset paging)


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArgs(_Args):
    pass


class PathArgs(_Args):
    path: str = Field(description="Path relative to the workspace root.")


class WriteArgs(_Args):
    path: str = Field(description="Path of an editable file, relative to the workspace root.")
    content: str = Field(description="The complete new text of the file.")


class PatchArgs(_Args):
    diff: str = Field(description="A unified diff (---/+++ headers, @@ hunks) against editable files.")


class ExperimentArgs(_Args):
    timeout_s: float | None = Field(
        default=None, gt=0, description="Wall-time limit in seconds; capped by the attempt's limit."
    )


class LogArgs(_Args):
    number: int = Field(ge=0, description="Experiment number.")
    offset: int = Field(default=0, ge=0, description="Byte offset to read the log from.")


class ToolArgumentsInvalid(ToolRefused):
    code = "bad_arguments"
    http_status = 422


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[_Args]
    call: Callable[[ToolClient, Any], Awaitable[str]]

    @property
    def schema(self) -> dict[str, Any]:
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        schema.setdefault("properties", {})
        return schema


async def _list(c: ToolClient, _a: NoArgs) -> str:
    return (await c.list_files()).model_dump_json()


async def _read(c: ToolClient, a: PathArgs) -> str:
    return await c.read_file(a.path)


async def _write(c: ToolClient, a: WriteArgs) -> str:
    return (await c.write_file(a.path, a.content)).model_dump_json()


async def _patch(c: ToolClient, a: PatchArgs) -> str:
    return (await c.apply_patch(a.diff)).model_dump_json()


async def _experiment(c: ToolClient, a: ExperimentArgs) -> str:
    return (await c.run_experiment(wait=True, timeout_s=a.timeout_s)).model_dump_json()


async def _log(c: ToolClient, a: LogArgs) -> str:
    return (await c.experiment_log(a.number, a.offset)).model_dump_json()


async def _submit(c: ToolClient, _a: NoArgs) -> str:
    return (await c.submit()).model_dump_json()


TOOLS: tuple[Tool, ...] = (
    Tool("list_files", "List the workspace's files, their sizes and which are editable.", NoArgs, _list),
    Tool("read_file", "Read a text file of the workspace.", PathArgs, _read),
    Tool("write_file", "Replace the whole content of an editable file.", WriteArgs, _write),
    Tool("apply_patch", "Apply a unified diff to editable files.", PatchArgs, _patch),
    Tool(
        "run_experiment",
        "Run the training script as it is now and wait for it to end; returns the exit status, "
        "validation metrics (time to the target loss) and the log's tail.",
        ExperimentArgs,
        _experiment,
    ),
    Tool("experiment_log", "Read an experiment's log from a byte offset.", LogArgs, _log),
    Tool(
        "submit",
        "Submit the workspace as it is now. This ends the attempt: no tool works afterwards.",
        NoArgs,
        _submit,
    ),
)
TOOLS_BY_NAME = {t.name: t for t in TOOLS}


def refusal_text(error: ToolRefused) -> str:
    return f"refused ({error.code}): {error}"


async def invoke(client: ToolClient, name: str, arguments: dict[str, Any]) -> str:
    """Run one tool; its text result, capped.

    Raises:
        ToolRefused: the tool API refused the call, or the tool or its arguments are unknown.
        SandboxLost: the sandbox is gone (infrastructure, never shown as a tool result).
    """
    tool = TOOLS_BY_NAME.get(name)
    if tool is None:
        raise ToolArgumentsInvalid(f"no tool {name!r}; tools: {', '.join(TOOLS_BY_NAME)}")
    try:
        args = tool.args.model_validate(arguments)
    except ValidationError as e:
        raise ToolArgumentsInvalid(f"{name}: {validation_problems(e, top=name)}") from None
    text = await tool.call(client, args)
    if len(text) > RESULT_CAP:
        text = text[:RESULT_CAP] + f"\n[... {len(text) - RESULT_CAP} more characters cut]"
    return text
