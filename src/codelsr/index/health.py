"""Whether an index can be trusted, what is wrong when it cannot, and what survives damage.

``check_index`` says ``ok``, ``damaged`` (with the files and the fix), ``unverified`` (built before
checksums) or ``not indexed``. A missing or garbage ``CURRENT`` next to published generations is
damage, not "not indexed": the user's index is there and its encoder must not be forgotten.

After damage, a reindex needs two things this module finds: the encoder and chunking options the
index was built with (``last_good_manifest``: the current generation's manifest if it is intact,
else the newest intact one kept beside it), and vectors it can reuse (``salvage_vectors``: the
segments of that generation whose chunk table, vectors and terms all match their checksums).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from codelsr.errors import CodelsrError, CorruptIndexError
from codelsr.index import catalog, generations
from codelsr.index.checksums import CHECKSUMS_FILE, Damage, Verdict, check_generation, file_digest, read_recorded
from codelsr.index.layout import CHUNKS_DB, DELTA_DIR, TERMS_FILE, VECTORS_FILE
from codelsr.index.manifest import MANIFEST_NAME, IndexManifest
from codelsr.records import SparseVector

OK, DAMAGED, UNVERIFIED, NOT_INDEXED = "ok", "damaged", "unverified", "not indexed"


def fix_for(repo: Path | str) -> str:
    return (f"run `codelsr index {repo}` (or the MCP tool index_repo): it rebuilds the damaged files, "
            "reusing what is intact; no --force needed")


@dataclass
class IndexHealth:
    repo: Path
    state: str  # OK, DAMAGED, UNVERIFIED or NOT_INDEXED
    checked: str  # "quick" (sizes + small files), "full" (every byte) or "none"
    problems: list[str] = field(default_factory=list)  # "<file>: <what is wrong>"
    generation: Path | None = None

    @property
    def fix(self) -> str | None:
        return fix_for(self.repo) if self.state == DAMAGED else None

    def message(self) -> str:
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"the index of {self.repo} is damaged: {self.problems[0]}{more}; {self.fix}"


def generation_folders(root: Path) -> list[Path]:
    """Published generation folders of an index root, newest first."""
    if not root.is_dir():
        return []
    # A progressive index keeps its lexical and learned generations one folder down (R/lexical,
    # R/learned; ``codelsr.index.progressive``); generation names sort by creation time.
    found = [*root.glob(f"{generations.GEN_PREFIX}*"), *root.glob(f"*/{generations.GEN_PREFIX}*")]
    return sorted((p for p in found if p.is_dir()), key=lambda p: p.name, reverse=True)


def _current_folder(root: Path) -> tuple[Path | None, str | None]:
    """(the generation CURRENT names, None) or (None, what is wrong with CURRENT); (None, None)
    when nothing was ever published."""
    pointer = root / generations.CURRENT
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        gens = generation_folders(root)
        return (None, f"{pointer}: missing, though generation {gens[0].name} is there") if gens else (None, None)
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{pointer}: unreadable ({exc})"
    folder = root / name
    sub, _, gen_name = name.rpartition("/")
    if not gen_name.startswith(generations.GEN_PREFIX) or "/" in sub or sub.startswith(".") or not folder.is_dir():
        shown = name if len(name) <= 60 and name.isprintable() else repr(name[:60])
        return None, f"{pointer}: names no generation ({shown!r})"
    return folder, None


def check_index(repo: Path | str, full: bool = False) -> IndexHealth:
    """The health of ``repo``'s index: the pointer, then every file against its checksum
    (``full``: every byte; else sizes and small files)."""
    repo = Path(repo).expanduser().resolve()
    root = catalog.index_root_for(repo)
    checked = "full" if full else "quick"
    folder, problem = _current_folder(root)
    if folder is None:
        if problem is None:
            return IndexHealth(repo, NOT_INDEXED, "none")
        return IndexHealth(repo, DAMAGED, checked, [problem])
    verdict = check_generation(folder, full)
    if verdict.damage:
        return IndexHealth(repo, DAMAGED, checked, [str(d) for d in verdict.damage], folder)
    if verdict.legacy:
        return IndexHealth(repo, UNVERIFIED, "none", [], folder)
    return IndexHealth(repo, OK, checked, [], folder)


def raise_if_damaged(folder: Path, repo: Path, full: bool = False) -> Verdict:
    """The quick (or full) check of one generation; ``CorruptIndexError`` naming the file and the
    fix when it finds damage."""
    verdict = check_generation(folder, full)
    if verdict.damage:
        raise CorruptIndexError(IndexHealth(repo, DAMAGED, "full" if full else "quick",
                                            [str(d) for d in verdict.damage], folder).message())
    return verdict


def _manifest_if_intact(folder: Path) -> IndexManifest | None:
    """The manifest of a generation when it matches its recorded checksum (or the generation
    predates checksums and the manifest reads)."""
    try:
        manifest = IndexManifest.read(folder)
    except CodelsrError:
        return None
    try:
        recorded = read_recorded(folder)
    except FileNotFoundError:
        return manifest if manifest.checksums is None else None
    except (OSError, ValueError, TypeError):
        return None
    entry = recorded.get(MANIFEST_NAME)
    try:
        return manifest if entry is not None and file_digest(folder / MANIFEST_NAME) == entry[1] else None
    except OSError:
        return None


def _candidates(root: Path) -> list[Path]:
    """Generations to trust first: the current one, then the others, newest first."""
    folder, _ = _current_folder(root)
    rest = [g for g in generation_folders(root) if g != folder]
    return ([folder] if folder is not None else []) + rest


def last_good_manifest(root: Path) -> IndexManifest | None:
    """The manifest of the current generation if intact, else of the newest intact generation
    kept beside it; None when there is none."""
    for folder in _candidates(root):
        manifest = _manifest_if_intact(folder)
        if manifest is not None:
            return manifest
    return None


def has_published(root: Path) -> bool:
    """Whether anything was ever published in ``root`` (a pointer or a generation folder)."""
    return (root / generations.CURRENT).exists() or bool(generation_folders(root))


class SalvagedVectors:
    """Vectors by content hash from the intact segments of a damaged generation."""

    def __init__(self, folder: Path, segments: list[Path]):
        from codelsr.index.store import ForwardIndex, SegmentChunks

        self.folder = folder
        self.segments = segments
        self._parts = []
        for seg in segments:
            chunks = SegmentChunks(seg / CHUNKS_DB)
            forward = ForwardIndex.read(seg)
            if chunks.n_rows != forward.n_rows:
                chunks.close()
                continue
            self._parts.append((chunks, forward))

    def vectors_for(self, hashes: set[str]) -> dict[str, SparseVector]:
        found: dict[str, SparseVector] = {}
        for chunks, forward in self._parts:
            need = [h for h in hashes if h not in found]
            if not need:
                break
            for row, h in chunks.rows_in("content_hash", need, "row, content_hash"):
                if h not in found:
                    found[h] = forward.row(row)
        return found

    def close(self) -> None:
        for chunks, _ in self._parts:
            chunks.close()


def salvage_vectors(root: Path, encoder_id: str) -> SalvagedVectors | None:
    """The intact segments of the newest generation built with ``encoder_id`` whose manifest is
    intact (a damaged manifest cannot vouch for which encoder made the vectors)."""
    for folder in _candidates(root):
        manifest = _manifest_if_intact(folder)
        if manifest is None or manifest.encoder_id != encoder_id:
            continue
        verdict = check_generation(folder, full=True)
        if verdict.legacy:
            return None
        bad = {d.path for d in verdict.damage}
        if folder / CHECKSUMS_FILE in bad:
            continue  # nothing to tell intact files from damaged ones
        intact = []
        for seg in (folder, folder / DELTA_DIR):
            names = [seg / CHUNKS_DB, seg / VECTORS_FILE, seg / TERMS_FILE]
            rels = [p.relative_to(folder).as_posix() for p in names]
            if all(r in verdict.digests for r in rels) and not any(p in bad for p in names):
                intact.append(seg)
        try:
            salvaged = SalvagedVectors(folder, intact)
        except CodelsrError:
            continue
        return salvaged
    return None


__all__ = ["DAMAGED", "NOT_INDEXED", "OK", "UNVERIFIED", "Damage", "IndexHealth", "SalvagedVectors",
           "check_index", "fix_for", "generation_folders", "has_published", "last_good_manifest",
           "raise_if_damaged", "salvage_vectors"]
