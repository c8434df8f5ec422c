"""The GPU kernel: the same model as workers/word2vec/kernel_numba.py in large torch batches.

The CPU lays a block of documents out as training examples (`make_examples`, numba, with the CPU
kernel's subsampling and dynamic window draws: workers/word2vec/draws.py), each an input (the rows
of one word for skip-gram, of the window's words for CBOW) and a target word; the device then trains
`batch` examples at a time (`train_examples`): h = mean of the input rows (embedding_bag), the
target and `negative` noise words drawn on the device from the alias table (and/or the target's
Huffman path) scored in one bmm, and every gradient added with index_add_.

A row that several examples of one batch touch gets the *sum* of their updates, as sequential
SGD would give it, unless that sum would overshoot: in a batch of 32 k examples "the" is an
output of thousands, and their summed step diverged to NaN (benchmark corpus on an H100; 0.76 M
words on CPU, even at 4 k examples per batch). So each row's summed update is scaled by
min(1, STEP_BOUND / (alpha c)), c = Σ σ'(f) |x|² over the row's entries in the batch (x the
other side of each score: h for an output row, the output rows for an input). c bounds the
curvature of the batch's loss in that row (the Hessian's trace, at least its largest
eigenvalue), and gradient descent with step size s is stable while s times that curvature stays
below 2: the scaled step keeps alpha c at STEP_BOUND or less. Rows few examples
touch (most of them) keep the plain sum. The previous rule, the *mean* of the examples' updates,
was stable but made thousands of times fewer steps than sequential SGD: after 5 epochs at
32 k examples per batch the loss was still log 2 per output (nothing learnt; benchmarks/README.md
has the comparison). With one example per batch (the tests' comparison with the CPU kernel)
nothing changes: updates within one example add, as in word2vec.c. The learning rate
falls linearly over the block, one value per batch. Loss: -log σ of the label-signed scores,
summed on the device (float64) and read once per call.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit

from firth.workers.word2vec.draws import subsample, window_span

# alpha times the curvature a row's summed step may reach. 1 learnt as well as the CPU kernel
# (0.76 M and 3.1 M words of the benchmark corpus, batch 32 k); 2 diverged to NaN. See below.
STEP_BOUND = 1.0


@njit(cache=True)
def _word_examples(ids, doc_offsets, keep_prob, sg, window, rng_state):  # pragma: no cover (compiled)
    """(input word offsets (E+1,) int64, input words (M,) int32, targets (E,) int32, kept words)."""
    n_words = ids.shape[0]
    cap = n_words * 2 * window + 1
    offsets = np.zeros(cap + 1, dtype=np.int64)
    words = np.empty(cap if sg else n_words * 2 * window + 1, dtype=np.int32)
    targets = np.empty(cap, dtype=np.int32)
    kept = np.empty(max(1, n_words), dtype=np.int32)
    r = rng_state[0]
    e, m, kept_words = 0, 0, 0
    for i in range(doc_offsets.shape[0] - 1):
        n, r = subsample(ids, doc_offsets[i], doc_offsets[i + 1], keep_prob, kept, r)
        kept_words += n
        for pos in range(n):
            lo, hi, r = window_span(pos, n, window, r)
            if hi - lo < 2:  # no context word: no example
                pass
            elif sg:  # one example per context word, the centre word its input
                for c in range(lo, hi):
                    if c != pos:
                        words[m] = kept[pos]
                        m += 1
                        targets[e] = kept[c]
                        e += 1
                        offsets[e] = m
            else:  # one example, the context words its input, the centre word its target
                for c in range(lo, hi):
                    if c != pos:
                        words[m] = kept[c]
                        m += 1
                targets[e] = kept[pos]
                e += 1
                offsets[e] = m
    rng_state[0] = r
    return offsets[:e + 1], words[:m], targets[:e], kept_words


@njit(cache=True)
def _expand_rows(word_offsets, words, row_offsets, rows):  # pragma: no cover (compiled)
    """Each example's input words -> their input rows: (offsets (E+1,) int64, rows (N,) int64)."""
    examples = word_offsets.shape[0] - 1
    out_offsets = np.zeros(examples + 1, dtype=np.int64)
    for e in range(examples):
        size = 0
        for k in range(word_offsets[e], word_offsets[e + 1]):
            size += row_offsets[words[k] + 1] - row_offsets[words[k]]
        out_offsets[e + 1] = out_offsets[e] + size
    out = np.empty(out_offsets[examples], dtype=np.int64)
    j = 0
    for k in range(words.shape[0]):
        w = words[k]
        for q in range(row_offsets[w], row_offsets[w + 1]):
            out[j] = rows[q]
            j += 1
    return out_offsets, out


def make_examples(ids: np.ndarray, doc_offsets: np.ndarray, keep_prob: np.ndarray, row_offsets: np.ndarray,
                  rows: np.ndarray, sg: bool, window: int, rng_state: np.ndarray):
    """(input row offsets (E+1,), input rows (N,), targets (E,), words kept) for a block of documents."""
    word_offsets, words, targets, kept = _word_examples(ids, doc_offsets, keep_prob, sg, window, rng_state)
    input_offsets, input_rows = _expand_rows(word_offsets, words, row_offsets, rows)
    return input_offsets, input_rows, targets, kept


class DeviceTables:
    """The vocabulary tables on the device, and its random generator."""

    def __init__(self, device: torch.device, alias_prob, alias_idx, codes, points, lengths, seed: int):
        def put(a):
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)
        self.alias_prob, self.alias_idx = put(alias_prob), put(alias_idx).long()
        self.codes, self.points, self.lengths = put(codes).float(), put(points).long(), put(lengths).long()
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)


def train_examples(syn0: torch.Tensor, syn1neg: torch.Tensor, syn1: torch.Tensor, input_offsets: np.ndarray,
                   input_rows: np.ndarray, targets: np.ndarray, tables: DeviceTables, negative: int, hs: bool,
                   alpha_start: float, alpha_end: float, batch: int = 65_536) -> float:
    """Train the examples `batch` at a time; returns the loss summed over every output scored."""
    device = syn0.device
    offsets_all = torch.from_numpy(input_offsets).to(device)
    rows_all = torch.from_numpy(input_rows).to(device)
    targets_all = torch.from_numpy(targets).to(device).long()
    examples = len(targets)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, examples, batch):
        stop = min(start + batch, examples)
        alpha = alpha_start + (alpha_end - alpha_start) * ((start + stop) / 2 / max(examples, 1))
        first, last = int(input_offsets[start]), int(input_offsets[stop])
        rows = rows_all[first:last]
        offsets = offsets_all[start:stop] - first  # (B,) start of each example's rows
        target = targets_all[start:stop]  # (B,)
        h = F.embedding_bag(rows, syn0, offsets, mode="mean")  # (B, D)
        grad_h = torch.zeros_like(h)
        curvature_h = torch.zeros(h.shape[0], device=device)  # (B,) Σ σ'(f) |w|² over the outputs scored
        if negative > 0:
            noise = _negative_outputs(target, tables, negative)
            loss += _score_and_update(syn1neg, h, grad_h, curvature_h, *noise, alpha)
        if hs:
            points, labels, mask = _path_outputs(target, tables)
            loss += _score_and_update(syn1, h, grad_h, curvature_h, points, labels, mask, alpha)
        counts = offsets_all[start + 1:stop + 1] - offsets_all[start:stop]  # (B,) rows per example
        updates = grad_h.repeat_interleave(counts, dim=0)  # every row: the full gradient of its example
        scale = _stable_scale(rows, curvature_h.repeat_interleave(counts), syn0.shape[0], alpha)
        syn0.index_add_(0, rows, updates * scale[:, None])
    return float(loss)


def _negative_outputs(target: torch.Tensor, tables: DeviceTables, negative: int):
    """(outputs (B, 1+K), labels (B, 1+K), mask (B, 1+K)): the target, then K alias draws."""
    size = (target.shape[0], negative)
    k = torch.randint(0, tables.alias_prob.shape[0], size, device=target.device, generator=tables.generator)
    coin = torch.rand(size, device=target.device, generator=tables.generator)
    noise = torch.where(coin < tables.alias_prob[k], k, tables.alias_idx[k])  # (B, K)
    outputs = torch.cat([target[:, None], noise], dim=1)
    labels = torch.zeros(outputs.shape, device=target.device)
    labels[:, 0] = 1.0
    mask = torch.ones(outputs.shape, device=target.device)
    mask[:, 1:] = (noise != target[:, None]).float()  # a draw equal to the target is skipped
    return outputs, labels, mask


def _path_outputs(target: torch.Tensor, tables: DeviceTables):
    """(inner nodes (B, L), labels 1 - code (B, L), mask of the path's length (B, L))."""
    points, codes = tables.points[target], tables.codes[target]
    mask = (torch.arange(points.shape[1], device=target.device)[None, :] < tables.lengths[target][:, None]).float()
    return points, 1.0 - codes, mask


def _score_and_update(out: torch.Tensor, h: torch.Tensor, grad_h: torch.Tensor, curvature_h: torch.Tensor,
                      outputs: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, alpha: float) -> torch.Tensor:
    """Score h against out[outputs], add the input gradient to grad_h and its curvature to
    curvature_h, update out; returns the loss sum."""
    w = out[outputs]  # (B, S, D)
    f = torch.bmm(w, h[:, :, None]).squeeze(2)  # (B, S)
    p = torch.sigmoid(f)
    g = (labels - p) * (alpha * mask)  # (B, S)
    loss = (-F.logsigmoid(torch.where(labels > 0, f, -f)) * mask).sum(dtype=torch.float64)
    grad_h += torch.bmm(g[:, None, :], w).squeeze(1)  # (B, D)
    bend = p * (1 - p) * mask  # (B, S) σ'(f): the second derivative of each output's loss along f
    curvature_h += (bend * (w * w).sum(2)).sum(1)
    rows = outputs.reshape(-1)
    updates = (g[:, :, None] * h[:, None, :]).reshape(-1, h.shape[1])  # (B*S, D)
    scale = _stable_scale(rows, (bend * (h * h).sum(1)[:, None]).reshape(-1), out.shape[0], alpha)
    out.index_add_(0, rows, updates * scale[:, None])
    return loss


def _stable_scale(rows: torch.Tensor, curvature: torch.Tensor, n_rows: int, alpha: float) -> torch.Tensor:
    """(N,) for each (row, curvature) entry: min(1, STEP_BOUND / (alpha * the row's summed curvature))."""
    per_row = torch.zeros(n_rows, dtype=curvature.dtype, device=rows.device).index_add_(0, rows, curvature)
    return (STEP_BOUND / (alpha * per_row[rows]).clamp(min=1e-30)).clamp(max=1.0)
