"""Documents longer than a SPLADE model's window, read in pieces and max-pooled.

Why: a model reads at most ``max_length_doc`` word pieces (256 for the shipped model, about 25
lines of code). Code chunks are cut to fit, but prose chunks are never shorter than 80 lines
(``chunking.walk``), and one Markdown or reST window can hold 1,000 word pieces or more: the model
used to see only its first 256 and the rest of the section did not exist for it. With
``doc_pieces = n`` a document's word pieces are cut into consecutive windows of the model's length
(each wrapped in the model's own special tokens), up to ``n`` of them, each is encoded on its own,
and a term's weight is its largest weight in any window: SPLADE's max over tokens, taken over the
whole document, with each token read in a window of at most ``max_length_doc``. A document that
fits one window is encoded exactly as before. Queries have their own pieces (``codelsr.queries``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["affixes", "piece_cap", "pooled_rows", "split_pieces"]


def affixes(with_specials: Sequence[int], plain: Sequence[int]) -> tuple[list[int], list[int]]:
    """(prefix, suffix): the special tokens a tokenizer puts around a text, found from one probe
    text tokenized with (``with_specials``) and without (``plain``) them: [CLS] / [SEP] for
    BERT, <s> / </s> for RoBERTa, nothing or an end token for decoders."""
    n = len(plain)
    for start in range(len(with_specials) - n + 1):
        if list(with_specials[start : start + n]) == list(plain):
            return list(with_specials[:start]), list(with_specials[start + n :])
    raise ValueError("the tokenizer changes a text's word pieces when it adds special tokens")


def piece_cap(max_length: int, n_affixes: int, max_pieces: int) -> int:
    """How many word pieces (special tokens included) to tokenize a document to, so that
    :func:`split_pieces` can fill ``max_pieces`` windows of ``max_length``."""
    return (max_length - n_affixes) * max_pieces + n_affixes


def split_pieces(ids: Sequence[int], prefix: Sequence[int], suffix: Sequence[int], max_length: int,
                 max_pieces: int) -> list[list[int]]:
    """``ids`` (one tokenized document, special tokens included) as windows of at most
    ``max_length`` ids, each wrapped in ``prefix`` and ``suffix``; at most ``max_pieces``."""
    if len(ids) <= max_length or max_pieces <= 1:
        return [list(ids)]  # the caller tokenized it to one window
    inner = list(ids[len(prefix) : len(ids) - len(suffix)])
    step = max_length - len(prefix) - len(suffix)
    if step < 1:
        raise ValueError(f"a window of {max_length} ids leaves no room for text between the special tokens")
    return [[*prefix, *inner[i : i + step], *suffix] for i in range(0, len(inner), step)][:max_pieces]


def pooled_rows(rows: Sequence[tuple[int, list[int]]], batch_size: int,
                activations: Callable[[list[list[int]]], Any],
                maximum: Callable[[Any, Any], Any]) -> Iterator[tuple[int, Any]]:
    """(text index, activations max-pooled over its pieces) for each text of ``rows`` (text index,
    piece ids), as soon as its last piece is encoded, so no text's dense row is held longer than
    needed. Pieces run longest first in batches of ``batch_size`` through ``activations`` (a batch
    of id lists -> one row per piece); ``maximum`` is the runtime's element-wise maximum."""
    order = sorted(range(len(rows)), key=lambda r: -len(rows[r][1]))
    left = Counter(i for i, _ in rows)
    pooled: dict[int, Any] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for row, r in zip(activations([rows[r][1] for r in chunk]), chunk):
            i = rows[r][0]
            pooled[i] = row if i not in pooled else maximum(pooled[i], row)
            left[i] -= 1
            if not left[i]:
                yield i, pooled.pop(i)
