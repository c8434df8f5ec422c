"""The CPU kernel: word2vec.c's training loop in numba, one family for SG/CBOW x NS/HS, word2vec
and fastText alike (a word's input is the mean of its rows, workers/word2vec/model.py).

`train_block` trains on a block of documents (flat ids + offsets), in place, single-threaded
(nogil, so a caller may run several blocks on threads over one state, Hogwild, as gensim does).
Per document: drop words by the subsampling draw, then slide over the kept words (windows never
cross documents, as gensim treats each sentence). Per position the window is reduced by a draw
b in [0, window) to window - b (word2vec.c's dynamic window). The learning rate falls linearly
from `alpha_start` to `alpha_end` over the block's words (the caller passes the block's share of
the run-wide linear decay).

- skip-gram: the centre word is the input (its mean row vector h computed once), each word of
  its reduced window a target; h's gradient is summed over the window and added to the centre's
  rows at the end of the window (fastText's orientation; word2vec.c instead updates the
  context word's vector after each pair; for one-row words the two differ only in when the input
  row is written within a window).
- CBOW: the input is the mean of all rows of all words in the reduced window, the target the
  centre; every input row gets the full gradient (gensim's cbow_mean=1, fastText's cbow).
- negative sampling: the target with label 1, `negative` draws from the alias table with label 0
  (a draw equal to the target is skipped); all output rows of a window are scored before any is
  updated (`_train_targets`); hierarchical softmax: the target's Huffman path.

Random numbers: word2vec.c's 64-bit LCG (workers/word2vec/draws.py, with the subsampling and window
draws the torch kernel shares), state passed in and out, so a fixed seed and block order give
identical results. Loss: -log σ(label-signed score) summed over
every output row scored (positive + negatives, or the path), from a log-sigmoid table; `stats`
collects [loss sum, examples trained, words kept].
"""
from __future__ import annotations

import numpy as np
from numba import njit

from firth.workers.word2vec.draws import next_random, subsample, window_span
from firth.workers.word2vec.model import EXP_TABLE_SIZE, MAX_EXP

_TABLE_SCALE = EXP_TABLE_SIZE / (2 * MAX_EXP)


@njit(cache=True, inline="always")
def _apply_output(h, grad, out_row, syn1, label, f, alpha, sig, logsig, dim):  # pragma: no cover (compiled)
    """One (input, output row) step given its score f = h . syn1[out_row]: grad += g * syn1[out_row];
    syn1[out_row] += g * h; returns the loss."""
    if f >= MAX_EXP:
        g = (label - np.float32(1.0)) * alpha
        loss = f if label == 0 else np.float32(0.0)  # -log σ(-f) ≈ f when f is large
    elif f <= -MAX_EXP:
        g = label * alpha
        loss = -f if label == 1 else np.float32(0.0)  # -log σ(f) ≈ -f
    else:
        k = int((f + MAX_EXP) * _TABLE_SCALE)
        g = (label - sig[k]) * alpha
        loss = -logsig[k] if label == 1 else f - logsig[k]  # log σ(-f) = log σ(f) - f
    for d in range(dim):  # one pass: read the output row once
        out = syn1[out_row, d]
        grad[d] += g * out
        syn1[out_row, d] = out + g * h[d]
    return loss


@njit(cache=True, inline="always")
def _dot(h, syn1, row, dim):  # pragma: no cover (compiled)
    f = np.float32(0.0)
    for d in range(dim):
        f += h[d] * syn1[row, d]
    return f


@njit(cache=True, inline="always")
def _train_targets(h, grad, targets, n_targets, syn1neg, syn1, negative, hs, codes, points, lengths, alias_prob,
                   alias_idx, alpha, sig, logsig, dim, r, outs, labels, scores):  # pragma: no cover (compiled)
    """Negative sampling and/or hierarchical softmax for one input h and targets[:n_targets]; returns (loss, r).

    Negative sampling draws every output row of the targets first (each target, then its
    `negative` noise words), scores them all against h, then applies the updates: the rows are
    random rows of a table larger than the caches, and scoring them in one pass lets their loads
    overlap instead of each waiting for the previous row's update (1.4-1.6x faster skip-gram here,
    benchmarks/README.md). A row drawn twice in one window is scored before its first update, as
    two Hogwild threads would; h does not change within the call either way.
    """
    loss = np.float32(0.0)
    if hs:
        for t in range(n_targets):
            target = targets[t]
            for p in range(lengths[target]):
                # code bit 1 is the label 0 branch, as in word2vec.c: g = (1 - code - σ) alpha
                row, label = points[target, p], np.float32(1 - codes[target, p])
                loss += _apply_output(h, grad, row, syn1, label, _dot(h, syn1, row, dim), alpha, sig, logsig, dim)
    if negative > 0:
        vocab = alias_prob.shape[0]
        m = 0
        for t in range(n_targets):
            target = targets[t]
            outs[m], labels[m] = target, 1.0
            m += 1
            for _ in range(negative):
                # one draw: the top 32 bits pick a column (multiply-shift, no division), bits 8..31 the coin
                r = next_random(r)
                k = np.int64(((r >> np.uint64(32)) * np.uint64(vocab)) >> np.uint64(32))
                u = np.float32((r >> np.uint64(8)) & np.uint64(0xFFFFFF)) / np.float32(16777216.0)
                noise = k if u < alias_prob[k] else np.int64(alias_idx[k])
                if noise == target:
                    continue
                outs[m], labels[m] = noise, 0.0
                m += 1
        for j in range(m):
            scores[j] = _dot(h, syn1neg, outs[j], dim)
        for j in range(m):
            loss += _apply_output(h, grad, outs[j], syn1neg, labels[j], scores[j], alpha, sig, logsig, dim)
    return loss, r


@njit(cache=True, nogil=True, fastmath=True)
def train_block(syn0, syn1neg, syn1, ids, doc_offsets, row_offsets, rows, keep_prob, alias_prob, alias_idx,
                codes, points, lengths, sg, negative, hs, window, alpha_start, alpha_end, rng_state, sig, logsig,
                stats):  # pragma: no cover (compiled)
    """Train on documents ids[doc_offsets[i]:doc_offsets[i+1]] in order; see the module docstring.

    syn0: (R, D) float32 input rows; syn1neg: (V, D); syn1: (V-1, D) (unused blocks may be (1, D));
    ids: (n,) int32 vocabulary ids; doc_offsets: (docs+1,) int64; row_offsets (V+1,) int64 and
    rows (total,) int32: each word's input rows; keep_prob (V,) float32; alias_prob (V,) float32,
    alias_idx (V,) int32; codes (V, L) uint8, points (V, L) int32, lengths (V,) int32;
    rng_state (1,) uint64 in/out; sig, logsig: (EXP_TABLE_SIZE,) float32; stats (3,) float64 += .
    """
    dim = syn0.shape[1]
    n_docs = doc_offsets.shape[0] - 1
    longest = 0
    for i in range(n_docs):
        longest = max(longest, doc_offsets[i + 1] - doc_offsets[i])
    kept = np.empty(longest, dtype=np.int32)  # one document's words after subsampling
    h = np.empty(dim, dtype=np.float32)  # (D,) the input's mean row
    grad = np.empty(dim, dtype=np.float32)  # (D,) the input's accumulated gradient
    targets = np.empty(2 * window, dtype=np.int32)  # one window's targets (skip-gram) or the centre (CBOW)
    outs = np.empty(2 * window * (negative + 1), dtype=np.int64)  # their output rows (negative sampling)
    labels = np.empty(2 * window * (negative + 1), dtype=np.float32)
    scores = np.empty(2 * window * (negative + 1), dtype=np.float32)
    r = rng_state[0]
    total_words = max(1, ids.shape[0])
    loss, examples, kept_words = 0.0, 0, 0
    for i in range(n_docs):
        start = doc_offsets[i]
        alpha = np.float32(alpha_start + (alpha_end - alpha_start) * ((start - doc_offsets[0]) / total_words))
        n, r = subsample(ids, start, doc_offsets[i + 1], keep_prob, kept, r)
        kept_words += n
        for pos in range(n):
            lo, hi, r = window_span(pos, n, window, r)
            if hi - lo < 2:
                continue
            if sg:
                word = kept[pos]
                _mean_input(syn0, row_offsets, rows, word, h, dim)
                grad[:] = 0.0
                n_targets = 0
                for c in range(lo, hi):
                    if c != pos:
                        targets[n_targets] = kept[c]
                        n_targets += 1
                step_loss, r = _train_targets(h, grad, targets, n_targets, syn1neg, syn1, negative, hs, codes,
                                              points, lengths, alias_prob, alias_idx, alpha, sig, logsig, dim, r,
                                              outs, labels, scores)
                loss += step_loss
                examples += n_targets
                _add_to_rows(syn0, row_offsets, rows, word, grad, dim)
            else:
                h[:] = 0.0
                count = 0
                for c in range(lo, hi):
                    if c == pos:
                        continue
                    w = kept[c]
                    for j in range(row_offsets[w], row_offsets[w + 1]):
                        row = rows[j]
                        for d in range(dim):
                            h[d] += syn0[row, d]
                        count += 1
                scale = np.float32(1.0) / np.float32(count)
                for d in range(dim):
                    h[d] *= scale
                grad[:] = 0.0
                targets[0] = kept[pos]
                step_loss, r = _train_targets(h, grad, targets, 1, syn1neg, syn1, negative, hs, codes, points,
                                              lengths, alias_prob, alias_idx, alpha, sig, logsig, dim, r, outs,
                                              labels, scores)
                loss += step_loss
                examples += 1
                for c in range(lo, hi):
                    if c != pos:
                        _add_to_rows(syn0, row_offsets, rows, kept[c], grad, dim)
    rng_state[0] = r
    stats[0] += loss
    stats[1] += examples
    stats[2] += kept_words


@njit(cache=True, inline="always")
def _mean_input(syn0, row_offsets, rows, word, h, dim):  # pragma: no cover (compiled)
    first, last = row_offsets[word], row_offsets[word + 1]
    row = rows[first]
    for d in range(dim):
        h[d] = syn0[row, d]
    if last - first > 1:
        for j in range(first + 1, last):
            row = rows[j]
            for d in range(dim):
                h[d] += syn0[row, d]
        scale = np.float32(1.0) / np.float32(last - first)
        for d in range(dim):
            h[d] *= scale


@njit(cache=True, inline="always")
def _add_to_rows(syn0, row_offsets, rows, word, grad, dim):  # pragma: no cover (compiled)
    for j in range(row_offsets[word], row_offsets[word + 1]):
        row = rows[j]
        for d in range(dim):
            syn0[row, d] += grad[d]
