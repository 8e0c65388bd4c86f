"""MCP tool calls as the eval suite's agent systems make them (no eval-extra imports, so the
SWE-bench task's agent system can use it on any Python)."""

from __future__ import annotations


async def call_tool(client, tool: str, **arguments) -> dict:
    """Call an MCP tool and return its structured content; a tool error raises with the server's message."""
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        text = result.content[0].text if result.content else "(no message)"
        raise RuntimeError(f"MCP tool {tool} failed: {text}")
    return result.structured_content
