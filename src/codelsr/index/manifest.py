"""The manifest: what an index generation holds and how it was built (``manifest.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from codelsr.chunking.context import NONE as NO_CONTEXT
from codelsr.errors import CorruptIndexError

# Bump when the on-disk layout changes; older generations are then refused with a rebuild hint.
# 2: main + delta segments, file table (files.json).
FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"


class MainSegment(BaseModel):
    """The main segment: immutable between compactions, its files shared by hard links."""

    rows: int = 0
    files: list[str] = []  # the segment's files (relative to the generation), linked into the next one
    terms: int = 0
    backend_requested: str | None = None  # what the build asked for ("auto" or a backend name)
    created_at: str | None = None  # when this main segment was written (the last compaction)


class DeltaSegment(BaseModel):
    rows: int = 0


class Segments(BaseModel):
    """The segments of a generation, and the size of every file it holds (checked on open)."""

    main: MainSegment = MainSegment()
    delta: DeltaSegment = DeltaSegment()
    tombstones: int = 0
    compacted: bool = False
    sizes: dict[str, int] = {}


class IndexManifest(BaseModel):
    format_version: int = FORMAT_VERSION
    codelsr_version: str
    repo_path: str
    encoder_spec: str = Field(description="what `get_encoder` is called with to rebuild the encoder")
    encoder_id: str
    encoder_settings: dict[str, Any] = {}
    backend: str
    backend_settings: dict[str, Any] = {}
    git_commit: str | None = None
    git_dirty: bool = False
    chunk_count: int
    file_count: int
    term_count: int
    skipped: dict[str, int] = {}
    created_at: str
    build_seconds: float = 0.0
    chunking: dict[str, Any] = {}
    segments: Segments = Segments()
    extra: dict[str, Any] = {}
    checksums: str | None = None  # algorithm of checksums.json (index.checksums); None: written before them

    @property
    def context_scheme(self) -> str:
        """The header scheme the chunks were encoded with (``chunking.context``); an index built
        before headers existed encoded none."""
        return str(self.chunking.get("context", NO_CONTEXT))

    @property
    def context_rules(self) -> int | None:
        """The version of the header rules the chunks were made with (``chunking.context``)."""
        return self.chunking.get("context_rules")

    def write(self, folder: Path) -> None:
        (folder / MANIFEST_NAME).write_text(self.model_dump_json(indent=2), encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> IndexManifest:
        path = folder / MANIFEST_NAME
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise CorruptIndexError(f"index file missing: {path}; rebuild with `codelsr index --force`") from exc
        except (OSError, ValueError) as exc:
            raise CorruptIndexError(
                f"index file unreadable: {path} ({exc}); rebuild with `codelsr index --force`"
            ) from exc
        if raw.get("format_version") != FORMAT_VERSION:
            raise CorruptIndexError(
                f"index at {folder} has format {raw.get('format_version')}, this codelsr reads "
                f"{FORMAT_VERSION}; rebuild with `codelsr index --force`"
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise CorruptIndexError(
                f"index file invalid: {path}; rebuild with `codelsr index --force`"
            ) from exc
