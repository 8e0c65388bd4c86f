"""explain: the score split into per-term contributions that add up to the hit's score, literal
terms told apart from expansion terms, and where in the chunk the score sits.

The lexical encoder never expands, so expansions are checked with a tiny randomly initialised
SPLADE (BERT masked-LM) model: its activations land on vocabulary terms that occur in neither text.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import anyio
import mcp
import pytest

from codelsr.explain import explain, term_kind
from codelsr.index import build_index
from codelsr.search import search
from codelsr.server import create_server

from conftest import SPLADE_EXTRA, git, write

QUERY = "levenshtein edit distance between strings"


def test_contributions_add_up_to_the_hit_score_and_lexical_terms_are_literal(sample_repo):
    build_index(sample_repo)
    hit = search(sample_repo, QUERY).hits[0]
    e = explain(sample_repo, QUERY, hit.chunk_id, max_terms=None)
    assert sum(t.contribution for t in e.terms) == pytest.approx(hit.score, rel=1e-6)
    assert e.score == pytest.approx(hit.score, rel=1e-6) and e.other_terms.count == 0
    assert all(t.kind == "literal" and not t.expansion for t in e.terms) and e.expansion_share == 0
    assert e.summary.startswith(f"score {e.score:.3f} from {len(e.terms)} shared terms")


def test_a_hybrid_encoders_lexical_terms_are_literal_with_their_lines(sample_repo):
    """``lex:levenshtein`` is the word levenshtein in both texts, not an expansion."""
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    build_index(sample_repo, "hybrid-code-tiny")
    hit = search(sample_repo, QUERY).hits[0]
    e = explain(sample_repo, QUERY, hit.chunk_id, max_terms=None)
    lexical = [t for t in e.terms if t.term.startswith("lex:")]
    assert lexical and len(lexical) < len(e.terms)  # SPLADE terms too
    for t in lexical:
        assert t.kind == "literal" and not t.expansion and t.lines, t
    assert sum(t.contribution for t in e.terms) == pytest.approx(hit.score, rel=1e-6)


def test_terms_beyond_max_terms_are_summed_so_nothing_is_lost(sample_repo):
    build_index(sample_repo)
    hit = search(sample_repo, QUERY).hits[0]
    full = explain(sample_repo, QUERY, hit.chunk_id, max_terms=None)
    cut = explain(sample_repo, QUERY, hit.chunk_id, max_terms=2)
    assert [t.term for t in cut.terms] == [t.term for t in full.terms[:2]]
    assert cut.other_terms.count == len(full.terms) - 2
    assert sum(t.contribution for t in cut.terms) + cut.other_terms.contribution == pytest.approx(full.score)
    assert cut.score == full.score


def test_focus_lines_point_at_the_lines_carrying_the_score(sample_repo):
    build_index(sample_repo)
    hit = search(sample_repo, "debounce callback wait").hits[0]
    e = explain(sample_repo, "debounce callback wait", hit.chunk_id)
    assert e.focus_lines and e.focus_lines[0].text.startswith("export function debounce(callback, waitMs)")
    contributions = [f.contribution for f in e.focus_lines]
    assert contributions == sorted(contributions, reverse=True)
    assert f"best lines {e.focus_lines[0].line}" in e.summary


@pytest.mark.parametrize("in_query, in_chunk, kind", [
    (True, True, "literal"), (False, True, "query_expansion"), (True, False, "document_expansion"),
    (False, False, "inferred"),
])
def test_each_term_is_told_literal_or_which_side_expanded_it(in_query, in_chunk, kind):
    assert term_kind(in_query, in_chunk) == kind


# ------------------------------------------------------------------ SPLADE: expansion terms

BERT_WORDS = (
    "def return class self import for in range print add parse text split os path join root name "
    "url client fetch a b tok parser the of to and is ( ) : . , = + [ ] ##s ##er ##ing "
    "network socket database cache tensor gradient kernel thread mutex queue pixel shader"
).split()


@pytest.fixture(scope="module")
def tiny_splade(tmp_path_factory) -> Path:
    """A random BertForMaskedLM with a word-level vocabulary, saved like a real checkpoint."""
    torch = pytest.importorskip("torch", reason=SPLADE_EXTRA)
    transformers = pytest.importorskip("transformers", reason=SPLADE_EXTRA)
    d = tmp_path_factory.mktemp("tiny-splade")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    if "vocab" in inspect.signature(transformers.BertTokenizerFast.__init__).parameters:
        tok = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    else:  # pragma: no cover - transformers 4.x
        tok = transformers.BertTokenizerFast(vocab_file=str(d / "vocab.txt"))
    tok.save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=128, initializer_range=0.2)
    transformers.BertForMaskedLM(cfg).save_pretrained(str(d))
    return d


@pytest.fixture
def small_repo(tmp_path) -> Path:
    repo = tmp_path / "root" / "small"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    write(repo, "ops.py", "def add(a, b):\n    return a + b\n\n\ndef join_path(root, name):\n"
                          "    return os.path.join(root, name)\n")
    write(repo, "parse.py", "class Parser:\n    def parse(self, text):\n        return text.split()\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
async def test_explain_match_flags_expansion_terms_of_a_splade_index_and_adds_up(tiny_splade, small_repo):
    server = create_server([small_repo.parent], default_encoder=f"splade:{tiny_splade}")
    query = "add a and b"
    async with mcp.Client(server, mode="legacy") as c:
        indexed = await c.call_tool("index_repo", {"path": str(small_repo)})
        assert not indexed.is_error, indexed.content[0].text
        # A learned encoder: index_repo serves a lexical index at once; the server's worker builds the
        # SPLADE one (progressive indexing). Wait for it.
        assert indexed.structured_content["learned"]["encoder"] == f"splade:{tiny_splade}"
        for _ in range(600):
            status = await c.call_tool("index_status", {"repo": str(small_repo)})
            repo_status = status.structured_content["repositories"][0]
            if repo_status["learned"]["state"] in ("complete", "stopped"):
                break  # stopped: the worker died; its error is in the status
            await anyio.sleep(0.5)
        assert repo_status["learned"]["state"] == "complete", repo_status  # says why when it is not
        assert repo_status["encoder"] == f"splade:{tiny_splade}"
        found = await c.call_tool("search_code", {"query": query})
        assert not found.is_error, found.content[0].text
        hits = found.structured_content["hits"]
        assert hits
        for hit in hits:
            result = await c.call_tool("explain_match", {"query": query, "chunk_id": hit["chunk_id"],
                                                         "max_terms": 3})
            assert not result.is_error, result.content[0].text
            e = result.structured_content
            assert json.loads(result.content[0].text) == e
            listed = sum(t["contribution"] for t in e["terms"])
            assert listed + e["other_terms"]["contribution"] == pytest.approx(hit["score"], rel=1e-5, abs=1e-5)
            assert e["score"] == pytest.approx(hit["score"], rel=1e-5, abs=1e-5)
    full = explain(small_repo, query, hits[0]["chunk_id"], max_terms=None)
    expansions = [t for t in full.terms if t.expansion]
    assert expansions, [(t.term, t.kind) for t in full.terms]
    # A random model activates words like "shader" or "mutex" that neither text contains.
    assert any(t.kind == "inferred" and not t.in_query and not t.in_chunk for t in expansions)
    assert 0 < full.expansion_share <= 1
    assert full.expansion_share == pytest.approx(sum(t.contribution for t in expansions) / full.score)
    for t in full.terms:
        assert t.expansion == (t.kind != "literal")
        assert bool(t.lines) == t.in_chunk
