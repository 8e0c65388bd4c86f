"""Content checksums of a generation's files, so damage a size check cannot see is still found.

Every build writes ``checksums.json`` last, just before the generation is published: for each
file of the generation (manifest and file table included) its size and BLAKE2b-256 digest, and a
digest of that list itself, so a damaged ``checksums.json`` is told apart from damaged data.

Two depths of checking:

* *quick* (every open of a generation, every ``codelsr status``): the checksum file itself, every
  file's size, and the full digest of every file up to ``QUICK_MAX_BYTES``. On a small or middling
  repository that is every byte; on a large one the big ``vectors.npz`` / ``chunks.sqlite`` are
  only size-checked here (``np.load`` still checks the zip CRC of the vectors it reads).
* *full* (``codelsr verify``, ``codelsr status --verify``, and every reindex before it reuses a
  segment): every byte of every file.

Generations written before checksums existed (their manifest has no ``checksums``) are reported
as unverified, not damaged.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

CHECKSUMS_FILE = "checksums.json"
ALGORITHM = "blake2b-256"
QUICK_MAX_BYTES = 8 << 20  # files up to this size are hashed by the quick check
_READ_BYTES = 1 << 20


@dataclass(frozen=True)
class Damage:
    """One damaged file of a generation and what is wrong with it."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class Verdict:
    """What a check of one generation found."""

    folder: Path
    full: bool  # every byte was read (else: sizes + small files)
    damage: list[Damage] = field(default_factory=list)
    files: int = 0  # files checked
    legacy: bool = False  # written before checksums: nothing to compare with
    digests: dict[str, tuple[int, str]] = field(default_factory=dict)  # recorded (size, digest) by relative path

    @property
    def ok(self) -> bool:
        return not self.damage


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        while block := f.read(_READ_BYTES):
            h.update(block)
    return h.hexdigest()


def _list_digest(files: dict[str, list]) -> str:
    text = json.dumps(files, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=32).hexdigest()


def write_checksums(folder: Path, reuse_from: Path | None = None,
                    reuse: dict[str, tuple[int, str]] | None = None) -> None:
    """Record the size and digest of every file under ``folder`` in ``checksums.json``.

    A file that is the same inode as ``reuse_from/<same path>`` (a main segment file linked into a
    new generation) takes its digest from ``reuse``, which the caller has just verified: a
    reindex then does not hash the unchanged main segment twice."""
    files: dict[str, list] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name == CHECKSUMS_FILE and path.parent == folder:
            continue
        rel = path.relative_to(folder).as_posix()
        size = path.stat().st_size
        known = (reuse or {}).get(rel)
        if known is not None and reuse_from is not None and known[0] == size:
            try:
                same = os.path.samefile(path, reuse_from / rel)
            except OSError:
                same = False
            if same:
                files[rel] = [size, known[1]]
                continue
        files[rel] = [size, file_digest(path)]
    payload = {"algorithm": ALGORITHM, "files": files, "self": _list_digest(files)}
    (folder / CHECKSUMS_FILE).write_text(json.dumps(payload, separators=(",", ":")), encoding="utf-8")


def read_recorded(folder: Path) -> dict[str, tuple[int, str]]:
    """The recorded sizes and digests; ``FileNotFoundError`` when there is no checksum file,
    ``ValueError`` when it is damaged."""
    raw = json.loads((folder / CHECKSUMS_FILE).read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or raw.get("algorithm") != ALGORITHM or not isinstance(raw.get("files"), dict):
        raise ValueError("not a checksum list this codelsr reads")
    if raw.get("self") != _list_digest(raw["files"]):
        raise ValueError("its own checksum does not match its content")
    return {str(rel): (int(size), str(dig)) for rel, (size, dig) in raw["files"].items()}


def check_generation(folder: Path, full: bool = False) -> Verdict:
    """Compare a generation's files with their recorded checksums (``full``: every byte)."""
    from codelsr.errors import CodelsrError
    from codelsr.index.manifest import IndexManifest

    verdict = Verdict(folder, full)
    try:
        recorded = read_recorded(folder)
    except FileNotFoundError:
        try:
            manifest = IndexManifest.read(folder)
        except CodelsrError as exc:
            verdict.damage.append(Damage(folder / "manifest.json", f"unreadable ({exc})"))
            return verdict
        if manifest.checksums is not None:
            verdict.damage.append(Damage(folder / CHECKSUMS_FILE, "missing"))
        else:
            verdict.legacy = True
        return verdict
    except (OSError, ValueError, TypeError) as exc:
        verdict.damage.append(Damage(folder / CHECKSUMS_FILE, f"damaged ({exc})"))
        return verdict
    verdict.digests = recorded
    for rel, (size, digest) in recorded.items():
        path = folder / rel
        verdict.files += 1
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            verdict.damage.append(Damage(path, "missing"))
            continue
        except OSError as exc:
            verdict.damage.append(Damage(path, f"unreadable ({exc.strerror or exc})"))
            continue
        if actual != size:
            verdict.damage.append(Damage(path, f"{actual} bytes where {size} were written"))
            continue
        if full or size <= QUICK_MAX_BYTES:
            try:
                if file_digest(path) != digest:
                    verdict.damage.append(Damage(path, "content differs from its checksum (same size: bits changed)"))
            except OSError as exc:
                verdict.damage.append(Damage(path, f"unreadable ({exc.strerror or exc})"))
    return verdict
