"""Sparse vectors -> an index on disk, one folder per repository, published in generations.

``build_index`` writes; ``open_index`` reads; ``index_status`` / ``list_indexes`` describe.
"""

from codelsr.index.build import IndexReport, build_index
from codelsr.index.manifest import IndexManifest
from codelsr.index.paths import index_root_for, indexes_home
from codelsr.index.reader import IndexReader, is_indexed, open_index
from codelsr.index.status import IndexStatus, index_status, list_indexes

__all__ = [
    "IndexManifest",
    "IndexReader",
    "IndexReport",
    "IndexStatus",
    "build_index",
    "index_root_for",
    "index_status",
    "indexes_home",
    "is_indexed",
    "list_indexes",
    "open_index",
]
