"""The folders the server may read: every path an agent passes must resolve inside one of them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from codelsr.errors import PathNotAllowedError


class AllowedRoots:
    """Resolved roots. ``check`` resolves symlinks and ``..`` before comparing, so neither a link
    inside a root nor ``root/../elsewhere`` escapes. Relative paths are taken from the first root."""

    def __init__(self, roots: Sequence[Path | str]):
        if not roots:
            raise ValueError("the server needs at least one root")
        resolved: list[Path] = []
        for root in roots:
            path = Path(root).expanduser().resolve()
            if not path.is_dir():
                raise PathNotAllowedError(f"root {root} is not an existing folder; pass --root with a folder")
            if path not in resolved:
                resolved.append(path)
        self.paths = resolved

    def __str__(self) -> str:
        return ", ".join(map(str, self.paths))

    def contains(self, path: Path) -> bool:
        """``path`` must already be resolved."""
        return any(path == root or path.is_relative_to(root) for root in self.paths)

    def check(self, path: str | os.PathLike[str]) -> Path:
        """The real path of ``path``, or ``PathNotAllowedError`` when it lies outside every root."""
        raw = Path(path).expanduser()
        real = (raw if raw.is_absolute() else self.paths[0] / raw).resolve()
        if not self.contains(real):
            shown = f"{path} (resolves to {real})" if str(real) != str(path) else str(path)
            raise PathNotAllowedError(
                f"{shown} is outside the folders this server may read ({self}); pass a path inside "
                "one of them, or restart the server with `codelsr serve --root <folder>`"
            )
        return real
