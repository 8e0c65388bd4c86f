"""Where indexes live: kept for existing imports; the locations are defined in ``catalog``."""

from __future__ import annotations

from codelsr.index.catalog import codelsr_home, index_root_for, indexes_home

__all__ = ["codelsr_home", "index_root_for", "indexes_home"]
