"""codelsr: learned sparse retrieval for code, served to coding agents over MCP.

The pipeline, one package per stage:
files -> ``chunking`` -> chunks -> ``encoders`` -> sparse vectors -> ``index`` -> ``search`` -> hits
-> ``explain``. ``cli`` and ``server`` are thin adapters over these stages.
"""

__version__ = "0.1.0"

from codelsr.errors import CodelsrError
from codelsr.records import Chunk, Hit, SparseVector

__all__ = ["__version__", "Chunk", "CodelsrError", "Hit", "SparseVector"]
