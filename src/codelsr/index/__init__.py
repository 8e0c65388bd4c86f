"""Sparse vectors -> an index on disk, one folder per repository, published in generations.

``build_index`` writes; ``open_index`` reads; ``index_status`` / ``list_indexes`` describe.
Names are imported on first use, so ``codelsr search`` does not pay for the build path's imports
(tree-sitter, GitPython) at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "IndexManifest": "codelsr.index.manifest",
    "IndexReader": "codelsr.index.reader",
    "IndexReport": "codelsr.index.build",
    "IndexStatus": "codelsr.index.status",
    "build_index": "codelsr.index.build",
    "index_root_for": "codelsr.index.catalog",
    "index_status": "codelsr.index.status",
    "indexes_home": "codelsr.index.catalog",
    "is_indexed": "codelsr.index.catalog",
    "list_indexes": "codelsr.index.status",
    "open_index": "codelsr.index.reader",
    "resolve_encoder": "codelsr.index.build",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from codelsr.index.build import IndexReport, build_index, resolve_encoder
    from codelsr.index.manifest import IndexManifest
    from codelsr.index.catalog import index_root_for, indexes_home, is_indexed
    from codelsr.index.reader import IndexReader, open_index
    from codelsr.index.status import IndexStatus, index_status, list_indexes


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'codelsr.index' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
