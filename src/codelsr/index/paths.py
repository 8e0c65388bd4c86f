"""Where indexes live: one folder per repository under the codelsr home.

``CODELSR_HOME`` overrides the platform's user data folder (tests and CI set it).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import platformdirs


def codelsr_home() -> Path:
    env = os.environ.get("CODELSR_HOME")
    base = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("codelsr", appauthor=False))
    return base


def indexes_home() -> Path:
    return codelsr_home() / "indexes"


def index_root_for(repo: Path) -> Path:
    """The index folder of a repository: readable name plus a hash of its resolved path."""
    resolved = Path(repo).expanduser().resolve()
    digest = hashlib.sha1(str(resolved).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", resolved.name or "root")[:40]
    return indexes_home() / f"{name}-{digest}"
