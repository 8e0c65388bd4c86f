"""The MCP server: codelsr's tools for coding agents (``codelsr serve``).

``create_server`` builds the server (tests connect to it in-process); ``serve_command`` runs it
over stdio or streamable HTTP for the CLI.
"""

from codelsr.server.app import create_server
from codelsr.server.serve import serve_command

__all__ = ["create_server", "serve_command"]
