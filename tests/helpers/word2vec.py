"""What the word2vec kernel tests share: a small corpus with a pattern, and the CPU kernel's run."""
from __future__ import annotations

import numpy as np

from firth.workers.word2vec.kernel_numba import train_block
from firth.workers.word2vec.model import NO_HUFFMAN as NO_HS
from firth.workers.word2vec.model import alias_table, huffman, keep_probabilities, sigmoid_tables


def run_numba(layout, state, ids, offsets, counts, sg, negative, hs, window, alpha, seed=1, sample=0.0):
    """The CPU kernel on one block, in place on `state`; returns its stats (loss sum, examples, kept)."""
    syn0, syn1neg, syn1 = layout.views(state)
    tables = huffman(counts) if hs else NO_HS
    prob, alias = alias_table(counts)
    stats = np.zeros(3)
    train_block(syn0, syn1neg, syn1, ids, offsets, layout.row_offsets, layout.rows,
                keep_probabilities(counts, sample), prob, alias, *tables, sg, negative, hs, window, alpha, alpha,
                np.array([seed], np.uint64), *sigmoid_tables(), stats)
    return stats


def corpus(vocab: int, docs: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Documents of Zipf-ish ids with a pattern (id k follows k-1 often): (ids, offsets, counts)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 30, docs)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.minimum(rng.zipf(1.5, offsets[-1]) - 1, vocab - 1).astype(np.int32)
    follow = rng.random(offsets[-1]) < 0.8
    ids[1:][follow[1:]] = (ids[:-1][follow[1:]] + 1) % vocab
    counts = np.bincount(ids, minlength=vocab) + 1
    order = np.argsort(-counts, kind="stable")  # ids by descending count, as the vocabulary
    rank = np.empty(vocab, np.int32)
    rank[order] = np.arange(vocab)
    return rank[ids], offsets, counts[order]
