"""Tool arguments the SDK rejects, reported in plain words: one line per argument, naming it,
saying what it must be and what was sent, instead of pydantic's multi-line report."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def plain_argument_errors(tool: str, exc: ValidationError) -> str:
    """``exc`` (the SDK's validation of a call's arguments) as sentences an agent can act on."""
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        if err.get("type") == "missing":
            parts.append(f"argument {name} is required")
            continue
        if err.get("type") == "extra_forbidden":
            parts.append(f"{name} is not an argument of {tool}")
            continue
        rule = str(err.get("msg", "is invalid"))
        rule = rule[len("Input "):] if rule.startswith("Input ") else rule
        parts.append(f"argument {name} {rule} (got {_shown(err.get('input'))})")
    return f"{tool}: " + "; ".join(parts)


def report_arguments_plainly(server: MCPServer) -> None:
    """Make ``server`` word argument errors with ``plain_argument_errors``."""
    call_tool = server.call_tool

    async def call_tool_with_plain_errors(name: str, arguments: dict[str, Any], context=None):
        try:
            return await call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(plain_argument_errors(name, exc.__cause__)) from exc.__cause__
            raise

    server.call_tool = call_tool_with_plain_errors  # the SDK's request handler calls this attribute
