"""The CPU kernel: word2vec.c's training loop in numba, one family for SG/CBOW x NS/HS, word2vec
and fastText alike (a word's input is the mean of its rows, workers/word2vec/model.py).

`train_block` trains on a block of documents (flat ids + offsets), in place, single-threaded
(nogil, so a caller may run several blocks on threads over one state, Hogwild, as gensim does).
Per document: drop words by the subsampling draw, then slide over the kept words (windows never
cross documents, as gensim treats each sentence). Per position the window is reduced by a draw
b in [0, window) to window - b (word2vec.c's dynamic window). The learning rate falls linearly
from `alpha_start` to `alpha_end` over the block's words (the caller passes the block's share of
the run-wide linear decay).

- skip-gram: the centre word is the input (fastText's orientation; gensim's word2vec predicts the
  centre from each context word, the same pairs reversed), each word of its reduced window a
  target, trained **one pair at a time as gensim and fastText do**: a pair's gradient moves the
  input before the next pair is scored. Every input row receives the full gradient, so the
  input's mean h moves by exactly that gradient (times Σ multiplicity² / n when a row is listed
  twice, `_mean_input`): h is kept up to date in a local copy and the rows are written once, with
  the window's summed gradient, at the end of the window. That is gensim's per-pair update step
  for step, at the cost of one mean per window instead of one per pair (gensim recomputes the
  mean of fastText's ~20 rows and writes them all for every pair). Until issue 20 the kernel
  scored every pair of a window against the window's first h (the summed gradient applied once):
  the input took a step up to 2·window pairs long from a stale point; benchmarks/README.md has
  the measured effect.
- CBOW: the input is the mean of all rows of all words in the reduced window, the target the
  centre; every input row gets the full gradient (gensim's cbow_mean=1, fastText's cbow).
- negative sampling: the target with label 1, `negative` draws from the alias table with label 0
  (a draw equal to the target is skipped, `_add_target`). Skip-gram draws the rows of every
  target of a window first and scores them all against h in one pass, then trains pair by pair,
  scoring the later pairs' rows again against the moved input: the rows are random rows of a
  table larger than the caches, and the first pass lets their loads overlap instead of each
  waiting for the previous row's update (the later scores then read cached rows).
  Hierarchical softmax: the target's Huffman path (`_hs_path`). A score outside (-MAX_EXP,
  MAX_EXP) updates nothing (gensim's rule). The tree's top TOP_NODES inner nodes, which nearly
  every pair walks, are trained in a copy per call (per thread) and shared with syn1 every
  SHARE_TOP_WORDS words and at the end (`_share_top`): threads see each other's changes to them
  that much later, instead of contending for their cache lines on every pair; one thread trains
  exactly as on syn1 itself.

Random numbers: word2vec.c's 64-bit LCG (workers/word2vec/draws.py: the subsampling, window and
noise draws, which the GPU kernel, kernel_cuda.py, compiles from the same functions), state passed
in and out, so a fixed seed and block order give identical results. Loss: -log σ(label-signed
score) summed over every output row scored (positive + negatives, or the path), from a
log-sigmoid table; `stats` collects [loss sum, examples trained, words kept].
"""
from __future__ import annotations

import numpy as np
from numba import njit

from firth.workers.word2vec.draws import noise_draw, subsample, window_span
from firth.workers.word2vec.model import input_step, output_gradient, skipgram_divisor

# Hierarchical softmax: every pair walks the root and most walk the nodes just below it, so Hogwild
# threads that wrote them in place would pass their cache lines back and forth on every pair. Each
# thread trains the top TOP_NODES inner nodes (62 % of the node visits on the benchmark corpus; the
# least used of them is on 1 % of pairs) in a copy of its own and shares its change every
# SHARE_TOP_WORDS words (`_share_top`). Two threads: 10-20 % less CPU and wall time for the same
# words (benchmarks/README.md, "Hierarchical softmax on two threads").
TOP_NODES = 128
SHARE_TOP_WORDS = 1024


@njit(cache=True, inline="always")
def _apply_output(h, grad, out_row, syn1, label, f, alpha, sig, logsig, dim):  # pragma: no cover (compiled)
    """One (input, output row) step given its score f = h . syn1[out_row]: grad += g * syn1[out_row];
    syn1[out_row] += g * h; returns the loss (g and the loss: model.py `output_gradient`, 0 for a
    saturated score)."""
    g, loss = output_gradient(f, label, alpha, sig, logsig)
    if g != 0:
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
def _hs_path(h, grad, target, syn1, top, first_top, codes, points, lengths, alpha, sig, logsig,
             dim):  # pragma: no cover (compiled)
    """Hierarchical softmax for one input h and one target: its Huffman path, the inner nodes from
    first_top on in this thread's copy `top` (`_share_top`); returns the loss."""
    loss = np.float32(0.0)
    for p in range(lengths[target]):
        # code bit 1 is the label 0 branch, as in word2vec.c: g = (1 - code - σ) alpha
        row, label = points[target, p], np.float32(1 - codes[target, p])
        if row >= first_top:
            row -= first_top
            loss += _apply_output(h, grad, row, top, label, _dot(h, top, row, dim), alpha, sig, logsig, dim)
        else:
            loss += _apply_output(h, grad, row, syn1, label, _dot(h, syn1, row, dim), alpha, sig, logsig, dim)
    return loss


@njit(cache=True, inline="always")
def _share_top(syn1, first_top, top, at_share, dim):  # pragma: no cover (compiled)
    """Add this thread's change of the top inner nodes since the last share (top - at_share) to
    the shared syn1, and take syn1's values, which hold the other threads' changes (module
    docstring). A row no other thread changed takes this thread's value as it is, so one thread
    trains exactly as without the copy."""
    for k in range(top.shape[0]):
        for d in range(dim):
            shared = syn1[first_top + k, d]
            value = top[k, d] if shared == at_share[k, d] else shared + (top[k, d] - at_share[k, d])
            syn1[first_top + k, d] = value
            top[k, d] = value
            at_share[k, d] = value


@njit(cache=True, inline="always")
def _add_target(target, negative, alias_prob, alias_idx, r, outs, labels, m):  # pragma: no cover (compiled)
    """outs[m:] = the target (label 1), then its `negative` noise draws (label 0; a draw equal to
    the target is skipped); returns (m after them, r)."""
    outs[m], labels[m] = target, 1.0
    m += 1
    for _ in range(negative):
        noise, r = noise_draw(alias_prob, alias_idx, r)
        if noise == target:
            continue
        outs[m], labels[m] = noise, 0.0
        m += 1
    return m, r


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
    work = np.empty(dim, dtype=np.float32)  # (D,) one (centre, target) pair's gradient
    outs = np.empty(2 * window * (negative + 1), dtype=np.int64)  # one window's targets and noise words
    labels = np.empty(2 * window * (negative + 1), dtype=np.float32)
    scores = np.empty(2 * window * (negative + 1), dtype=np.float32)
    starts = np.empty(2 * window + 1, dtype=np.int64)  # target t's output rows: outs[starts[t]:starts[t+1]]
    # this thread's copy of the Huffman tree's top inner nodes (the highest rows; module docstring)
    first_top = max(0, syn1.shape[0] - TOP_NODES) if hs else syn1.shape[0]
    top = syn1[first_top:].copy()  # (TOP_NODES, D)
    at_share = top.copy()  # their values when last shared
    since_share = 0
    r = rng_state[0]
    total_words = max(1, ids.shape[0])
    loss, examples, kept_words = 0.0, 0, 0
    for i in range(n_docs):
        start = doc_offsets[i]
        alpha = np.float32(alpha_start + (alpha_end - alpha_start) * ((start - doc_offsets[0]) / total_words))
        n, r = subsample(ids, start, doc_offsets[i + 1], keep_prob, kept, r)
        kept_words += n
        since_share += n
        if since_share >= SHARE_TOP_WORDS:
            _share_top(syn1, first_top, top, at_share, dim)
            since_share = 0
        for pos in range(n):
            lo, hi, r = window_span(pos, n, window, r)
            if hi - lo < 2:
                continue
            if sg:
                word = kept[pos]
                h_step = _mean_input(syn0, row_offsets, rows, word, h, dim)
                grad[:] = 0.0
                n_targets, m = 0, 0
                for c in range(lo, hi):
                    if c != pos:
                        starts[n_targets] = m
                        m, r = _add_target(kept[c], negative, alias_prob, alias_idx, r, outs, labels, m)
                        n_targets += 1
                starts[n_targets] = m
                if negative > 0:  # every row of the window scored first: their loads overlap (module docstring)
                    for j in range(m):
                        scores[j] = _dot(h, syn1neg, outs[j], dim)
                for t in range(n_targets):  # one pair at a time, the input moved by each (module docstring)
                    work[:] = 0.0
                    if hs:
                        loss += _hs_path(h, work, outs[starts[t]], syn1, top, first_top, codes, points, lengths,
                                         alpha, sig, logsig, dim)
                    if negative > 0:
                        for j in range(starts[t], starts[t + 1]):
                            # the first pair's scores are current; later pairs score the moved input
                            # again, on rows that the first pass brought into the cache
                            f = scores[j] if t == 0 else _dot(h, syn1neg, outs[j], dim)
                            loss += _apply_output(h, work, outs[j], syn1neg, labels[j], f, alpha, sig, logsig, dim)
                    for d in range(dim):
                        grad[d] += work[d]
                        h[d] += h_step * work[d]
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
                if hs:
                    loss += _hs_path(h, grad, kept[pos], syn1, top, first_top, codes, points, lengths, alpha, sig,
                                     logsig, dim)
                if negative > 0:
                    m, r = _add_target(kept[pos], negative, alias_prob, alias_idx, r, outs, labels, 0)
                    for j in range(m):
                        scores[j] = _dot(h, syn1neg, outs[j], dim)
                    for j in range(m):
                        loss += _apply_output(h, grad, outs[j], syn1neg, labels[j], scores[j], alpha, sig, logsig,
                                              dim)
                examples += 1
                for c in range(lo, hi):
                    if c != pos:
                        _add_to_rows(syn0, row_offsets, rows, kept[c], grad, dim)
    _share_top(syn1, first_top, top, at_share, dim)
    rng_state[0] = r
    stats[0] += loss
    stats[1] += examples
    stats[2] += kept_words


@njit(cache=True, inline="always")
def _mean_input(syn0, row_offsets, rows, word, h, dim):  # pragma: no cover (compiled)
    """h = the mean of the word's rows; returns how far h moves when every listed row gets +g: g
    times (Σ over listed rows of how often that row is listed) / n, which is 1 unless a row is
    listed twice (an n-gram twice in a word, "ana" in "banana", or two n-grams in one bucket)."""
    first, last = row_offsets[word], row_offsets[word + 1]
    row = rows[first]
    for d in range(dim):
        h[d] = syn0[row, d]
    if last - first == 1:
        return np.float32(1.0)
    for j in range(first + 1, last):
        row = rows[j]
        for d in range(dim):
            h[d] += syn0[row, d]
    scale = np.float32(1.0) / skipgram_divisor(last - first)
    for d in range(dim):
        h[d] *= scale
    return input_step(rows, first, last)


@njit(cache=True, inline="always")
def _add_to_rows(syn0, row_offsets, rows, word, grad, dim):  # pragma: no cover (compiled)
    for j in range(row_offsets[word], row_offsets[word + 1]):
        row = rows[j]
        for d in range(dim):
            syn0[row, d] += grad[d]
