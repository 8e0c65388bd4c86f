"""SPLADE pooling: the math that turns a network's LM-head logits into term weights.

    weight(term) = log(1 + ReLU(max over real tokens of logit(token, term)))

Pure functions of tensors, shared by the encoder (``encoder.SpladeEncoder``) and by training
(``tools/train/train.py``), so what a model is trained to produce is what serving computes.
Taking the max before the activation equals taking it after (``log1p . relu`` is monotone) and
is cheaper; adding a bias after the max is exact too (``max(x + b) == max(x) + b``, rounding is
monotone), and so is a logit soft-cap (Gemma 2/3) applied after the max.

torch is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

from typing import Any

# Rows of the LM head multiplied per chunk: bounds the temporary logits to ~64M floats.
LOGIT_BUDGET = 64 * 1024 * 1024


def head_max_logits(weight: Any, hidden: Any, mask: Any, budget: int = LOGIT_BUDGET) -> Any:
    """Max over each row's real tokens of the head's logits ``weight @ state`` (no bias):
    (batch, vocab) in ``weight``'s dtype; ``-inf`` for a row without tokens.

    ``hidden``: (batch, length, hidden) pre-head states; ``mask``: (batch, length), 1 on real
    tokens. The logits are computed vocabulary-major (``W @ states.T``, shape V x tokens) in
    chunks of tokens, keeping a running max, so the max runs along contiguous memory and ``amax``
    (no argmax indices) does it: 2-3x faster on CPU than ``(states @ W.T).max(0)`` for the same
    numbers, and the batch x length x vocabulary tensor never exists.
    """
    import torch

    vocab = weight.shape[0]
    cols_per_chunk = max(1, budget // max(1, vocab))
    pooled = []
    for b in range(hidden.shape[0]):
        states = hidden[b][mask[b].bool()]
        best = None
        for start in range(0, states.shape[0], cols_per_chunk):
            chunk_max = (weight @ states[start : start + cols_per_chunk].T).amax(dim=1)
            best = chunk_max if best is None else torch.maximum(best, chunk_max)
        if best is None:
            best = torch.full((vocab,), float("-inf"), dtype=weight.dtype, device=weight.device)
        pooled.append(best)
    return torch.stack(pooled)


def max_over_tokens(logits: Any, lengths: list[int]) -> Any:
    """Max over each text's tokens of logits computed for real tokens only, stacked text after
    text: ``logits`` (n_real_tokens, vocab), ``lengths`` tokens per text -> (batch, vocab).
    Differentiable (training's path)."""
    import torch

    return torch.stack([part.max(dim=0).values for part in torch.split(logits, lengths)])


def activate(max_logits: Any, *, bias: Any = None, softcap: float | None = None, keep: Any = None) -> Any:
    """SPLADE's activation of max-pooled logits, in float32: ``log1p(relu(max + bias))``, with
    the soft-cap ``tanh(x / c) * c`` first when the model has one, times ``keep`` (a 0/1 mask of
    the vocabulary entries that may be terms: no special tokens)."""
    import torch

    x = max_logits.float()
    if bias is not None:
        x = x + bias.float()
    if softcap:
        x = torch.tanh(x / softcap) * softcap
    acts = torch.log1p(torch.relu(x))
    return acts if keep is None else acts * keep
