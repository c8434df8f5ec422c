"""word2vec / fastText model math shared by every kernel: the tables built from vocabulary counts,
the parameter layout, the per-output gradient rule, and what is published. Kernels:
workers/word2vec/kernel_numba.py (CPU) and workers/word2vec/kernel_cuda.py (GPU), which compiles
`output_gradient` and `input_step` from the same functions. No engine here.

Tables (built once per run from the vocabulary's counts; ids are sorted by descending count):
- Huffman tree (`huffman`), word2vec.c's CreateBinaryTree: codes (V, MAX_CODE) uint8,
  points (V, MAX_CODE) int32 (inner-node rows of syn1, root first), lengths (V,) int32.
- Noise distribution for negative sampling: P(w) ∝ count^0.75, sampled in O(1) with Walker's
  alias method (`alias_table`): draw k uniform in [0, V), keep k with probability prob[k], else
  take alias[k].
- Subsampling (`keep_probabilities`), the formula of word2vec.c and gensim:
      keep(w) = min(1, (sqrt(f_w / (t * total)) + 1) * (t * total) / f_w)
  with f_w the word's count, total the corpus' in-vocabulary token count and t = `sample`
  (0 keeps every word). A word is dropped when a uniform draw exceeds keep(w).
- Sigmoid and log-sigmoid lookup tables over [-MAX_EXP, MAX_EXP] (word2vec.c's EXP_TABLE).

Parameters: one float32 `state` (R + V·[negative > 0] + (V-1)·[hs], D), so that one all-reduce
syncs and one file checkpoints everything: rows [0, R) are the input vectors (syn0; R = V for
word2vec, V + K for fastText, K = the n-gram buckets some vocabulary word uses, compacted), then
syn1neg (output vectors for negative sampling), then syn1 (Huffman inner nodes).
A word's input is built from its rows `rows[row_offsets[w]:row_offsets[w+1]]` (summed, then divided
as below): the word itself for word2vec; the word and its n-gram buckets for fastText (schemas/subwords.py). Every
row of an input receives the full gradient (fastText's and gensim's cbow_mean behaviour).
Initialisation: input rows uniform in (-1, 1) / D (gensim's and fastText's; word2vec.c's is half
as wide), output rows 0.

fastText's skip-gram training input is the word's row and its n n-grams summed and divided by n,
the n-gram count (`skipgram_divisor`), as gensim's training does (its `subwords_len` counts the
n-grams only); published vectors divide by n + 1 (`word_vectors`), as gensim and Facebook's fastText
do. Facebook's fastText also trains on the mean over n + 1; firth did until issue 20, and on the
benchmark corpus (3 seeds each, benchmarks/README.md) that trailed gensim on SimLex-999 by 0.007
(0.2414 against 0.2481); dividing by n raised it in each of the 3 paired seeds (+0.004, +0.007,
+0.001; mean 0.2455), WordSim-353 and analogies unchanged within their spread. CBOW divides a
window's summed rows by their count, as both do.

Where firth differs from gensim 4.4 on purpose (the full comparison: benchmarks/README.md, issue 20):
- skip-gram predicts the context from the centre (fastText's orientation; gensim's word2vec
  predicts the centre from each context word): the same pairs, and one input mean per window.
- the noise distribution count^0.75 is drawn from an alias table (gensim: a cumulative table and
  bisection): the same distribution in O(1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from firth.schemas.subwords import word_buckets

MAX_CODE = 40  # longest Huffman code (word2vec.c's MAX_CODE_LENGTH)
MAX_EXP, EXP_TABLE_SIZE = 6.0, 1000
# (codes, points, lengths) for a kernel trained without hierarchical softmax: never read
NO_HUFFMAN = (np.zeros((1, 1), np.uint8), np.zeros((1, 1), np.int32), np.zeros(1, np.int32))


def huffman(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Huffman codes of V words with `counts` sorted descending: (codes, points, lengths)."""
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) < 2:
        raise ValueError(f"hierarchical softmax needs at least 2 vocabulary words, got {len(counts)}; "
                         "set model.hs: false or lower statistics.min_count")
    if np.any(np.diff(counts) > 0):
        raise ValueError("huffman: counts must be sorted descending (vocabulary ids by count)")
    return _huffman(counts)


@njit(cache=True)
def _huffman(counts):  # pragma: no cover (compiled)
    vocab = counts.shape[0]
    count = np.empty(2 * vocab, dtype=np.int64)
    count[:vocab] = counts
    count[vocab:] = 1 << 62
    binary = np.zeros(2 * vocab, dtype=np.uint8)
    parent = np.zeros(2 * vocab, dtype=np.int64)
    pos1, pos2 = vocab - 1, vocab  # the smallest leaf not yet merged; the smallest inner node
    for a in range(vocab - 1):  # two smallest of the leaves (from the end) and the inner nodes
        if pos1 >= 0 and count[pos1] < count[pos2]:
            min1 = pos1
            pos1 -= 1
        else:
            min1 = pos2
            pos2 += 1
        if pos1 >= 0 and count[pos1] < count[pos2]:
            min2 = pos1
            pos1 -= 1
        else:
            min2 = pos2
            pos2 += 1
        count[vocab + a] = count[min1] + count[min2]
        parent[min1] = vocab + a
        parent[min2] = vocab + a
        binary[min2] = 1
    codes = np.zeros((vocab, MAX_CODE), dtype=np.uint8)
    points = np.zeros((vocab, MAX_CODE), dtype=np.int32)
    lengths = np.zeros(vocab, dtype=np.int32)
    code = np.zeros(MAX_CODE, dtype=np.uint8)
    point = np.zeros(MAX_CODE, dtype=np.int64)
    root = 2 * vocab - 2
    for w in range(vocab):
        node, i = w, 0
        while node != root:  # leaf to root
            code[i] = binary[node]
            point[i] = node
            i += 1
            node = parent[node]
        lengths[w] = i
        # stored root first: points are inner nodes as syn1 rows (node - V); the first is the root
        points[w, 0] = root - vocab
        for b in range(i):
            codes[w, i - b - 1] = code[b]
            if b > 0:
                points[w, i - b] = point[b] - vocab
    return codes, points, lengths


def alias_table(counts: np.ndarray, power: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table for P(w) ∝ counts^power: (prob (V,) float32, alias (V,) int32)."""
    weights = np.asarray(counts, dtype=np.float64) ** power
    scaled = weights * (len(weights) / weights.sum())  # mean 1
    prob = np.ones(len(weights), dtype=np.float64)
    alias = np.arange(len(weights), dtype=np.int32)
    _alias_fill(scaled, prob, alias)
    return prob.astype(np.float32), alias


@njit(cache=True)
def _alias_fill(scaled, prob, alias):  # pragma: no cover (compiled)
    """Vose's method: pair each under-full column with an over-full one (in place)."""
    vocab = scaled.shape[0]
    small = np.empty(vocab, dtype=np.int64)
    large = np.empty(vocab, dtype=np.int64)
    n_small = n_large = 0
    for w in range(vocab):
        if scaled[w] < 1.0:
            small[n_small] = w
            n_small += 1
        else:
            large[n_large] = w
            n_large += 1
    while n_small > 0 and n_large > 0:
        n_small -= 1
        s = small[n_small]
        g = large[n_large - 1]
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] = scaled[g] + scaled[s] - 1.0
        if scaled[g] < 1.0:  # g is under-full now: move it to the small stack
            n_large -= 1
            small[n_small] = g
            n_small += 1
    # the columns left are full up to rounding: prob 1, alias itself


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """(V,) float32 probability of keeping each occurrence of a word (module docstring formula)."""
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones(len(counts), dtype=np.float32)
    threshold = sample * counts.sum()
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1.0) * threshold / counts).astype(np.float32)


def sigmoid_tables() -> tuple[np.ndarray, np.ndarray]:
    """(sigmoid, log sigmoid) over [-MAX_EXP, MAX_EXP) in EXP_TABLE_SIZE cells, float32: a kernel
    looks up cell int((f + MAX_EXP) * EXP_TABLE_SIZE / (2 MAX_EXP)); each holds the value at its
    centre (word2vec.c's at its left edge, which biases the summed loss upwards)."""
    x = ((np.arange(EXP_TABLE_SIZE) + 0.5) / EXP_TABLE_SIZE * 2 - 1) * MAX_EXP
    return (1 / (1 + np.exp(-x))).astype(np.float32), (-np.log1p(np.exp(-x))).astype(np.float32)


_TABLE_SCALE = EXP_TABLE_SIZE / (2 * MAX_EXP)


@njit(cache=True, inline="always")
def output_gradient(f, label, alpha, sig, logsig):  # pragma: no cover (compiled)
    """(g, loss) of one output scored f = h . out with label 1 or 0: g = (label - σ(f)) alpha and
    loss = -log σ(±f) from the tables. A score outside (-MAX_EXP, MAX_EXP) gets g = 0, no update
    (gensim's rule for both outputs, word2vec.c's for hierarchical softmax); its loss still counts."""
    if f >= MAX_EXP:
        return np.float32(0.0), (f if label == 0 else np.float32(0.0))  # -log σ(-f) ≈ f when f is large
    if f <= -MAX_EXP:
        return np.float32(0.0), (-f if label == 1 else np.float32(0.0))  # -log σ(f) ≈ -f
    k = int((f + MAX_EXP) * _TABLE_SCALE)
    g = (label - sig[k]) * alpha
    return g, (-logsig[k] if label == 1 else f - logsig[k])  # log σ(-f) = log σ(f) - f


@njit(cache=True, inline="always")
def skipgram_divisor(n):  # pragma: no cover (compiled)
    """What a skip-gram input's n summed rows are divided by in training: n - 1, the n-gram count,
    for a fastText word (its row and n - 1 n-grams), as gensim's training does; 1 for a word2vec
    word. Not the mean over n (Facebook's fastText): measured against gensim on the benchmark
    corpus, the mean trailed gensim's SimLex-999 ρ by 0.007, this by 0.003 (module docstring)."""
    return np.float32(n - 1) if n > 1 else np.float32(1.0)


@njit(cache=True, inline="always")
def input_step(rows, first, last):  # pragma: no cover (compiled)
    """How far a skip-gram input (its listed rows rows[first:last] summed, over skipgram_divisor)
    moves when each listed row gets +g: g times (Σ over the distinct rows of multiplicity²) / the
    divisor, which is n / divisor unless a row is listed twice (an n-gram twice in a word, "ana" in
    "banana", or two n-grams in one bucket)."""
    repeats = 0
    for j in range(first + 1, last):
        for k in range(first, j):
            repeats += rows[k] == rows[j]
    n = last - first
    return np.float32(n + 2 * repeats) / skipgram_divisor(n)  # Σ m² = n + 2 (pairs listed twice)


@dataclass(frozen=True)
class Layout:
    """Where each parameter block lives in `state`, and which rows make up each word's input."""
    vocab_size: int
    dim: int
    row_offsets: np.ndarray  # (V+1,) int64
    rows: np.ndarray  # (total,) int32: input rows of word w at rows[row_offsets[w]:row_offsets[w+1]]
    bucket_ids: np.ndarray  # (K,) int64 sorted: the n-gram bucket of input row V + k (fastText; else empty)
    negative: bool
    hs: bool

    @property
    def n_input(self) -> int:
        return self.vocab_size + len(self.bucket_ids)

    @property
    def n_rows(self) -> int:
        return self.n_input + self.vocab_size * self.negative + (self.vocab_size - 1) * self.hs

    def views(self, state):
        """(syn0, syn1neg, syn1) views of a (n_rows, D) array or tensor; absent blocks are (1, D) dummies."""
        syn0 = state[:self.n_input]
        start = self.n_input
        syn1neg = state[start:start + self.vocab_size] if self.negative else state[:1]
        start += self.vocab_size * self.negative
        syn1 = state[start:start + self.vocab_size - 1] if self.hs else state[:1]
        return syn0, syn1neg, syn1


def make_layout(tokens: list[str], dim: int, negative: bool, hs: bool,
                subwords: tuple[int, int, int] | None = None) -> Layout:
    """Layout for a vocabulary in id order; `subwords` = (min_n, max_n, buckets) for fastText."""
    vocab = len(tokens)
    if subwords is None:
        return Layout(vocab, dim, np.arange(vocab + 1, dtype=np.int64), np.arange(vocab, dtype=np.int32),
                      np.zeros(0, dtype=np.int64), negative, hs)
    offsets, buckets = word_buckets(tokens, *subwords)  # CSR of each word's n-gram buckets
    bucket_ids, compact = np.unique(buckets, return_inverse=True)  # only buckets a word uses get a row
    counts = np.diff(offsets) + 1  # the word's own row, then its n-grams
    row_offsets = np.zeros(vocab + 1, dtype=np.int64)
    np.cumsum(counts, out=row_offsets[1:])
    rows = np.empty(row_offsets[-1], dtype=np.int32)
    rows[row_offsets[:-1]] = np.arange(vocab)
    ngram_slots = np.ones(len(rows), dtype=bool)
    ngram_slots[row_offsets[:-1]] = False
    rows[ngram_slots] = vocab + compact
    return Layout(vocab, dim, row_offsets, rows, bucket_ids.astype(np.int64), negative, hs)


def init_state(layout: Layout, seed: int) -> np.ndarray:
    """Fresh (n_rows, D) float32 state: inputs uniform in (-1, 1) / D, outputs 0."""
    rng = np.random.default_rng(seed)
    state = np.zeros((layout.n_rows, layout.dim), dtype=np.float32)
    state[:layout.n_input] = (rng.random((layout.n_input, layout.dim), dtype=np.float32) * np.float32(2)
                              - np.float32(1)) / np.float32(layout.dim)
    return state


def word_vectors(layout: Layout, state: np.ndarray) -> np.ndarray:
    """(V, D) float32: each word's input, the mean of its rows (fastText's in-vocabulary vectors)."""
    syn0 = np.asarray(state[:layout.n_input], dtype=np.float32)
    if not len(layout.bucket_ids):
        return np.ascontiguousarray(syn0[:layout.vocab_size])
    return _mean_rows(syn0, layout.row_offsets, layout.rows)


@njit(cache=True)
def _mean_rows(syn0, row_offsets, rows):  # pragma: no cover (compiled)
    vocab, dim = row_offsets.shape[0] - 1, syn0.shape[1]
    out = np.zeros((vocab, dim), dtype=np.float32)
    acc = np.zeros(dim, dtype=np.float64)
    for w in range(vocab):
        acc[:] = 0.0
        for r in range(row_offsets[w], row_offsets[w + 1]):
            for d in range(dim):
                acc[d] += syn0[rows[r], d]
        n = row_offsets[w + 1] - row_offsets[w]
        for d in range(dim):
            out[w, d] = acc[d] / n
    return out
