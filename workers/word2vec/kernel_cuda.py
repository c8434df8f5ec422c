"""The GPU kernel: the CPU kernel's model (workers/word2vec/kernel_numba.py) in numba-cuda, laid out as
the published fast GPU trainers are.

Layout. Documents are cut into chunks of at most CHUNK words (`chunk_offsets`); one launch per block
of documents runs one **thread block per chunk** (thousands in flight), each chunk trained as the
CPU kernel trains a document. A thread block has dim / PER_THREAD threads (dim 100: 25, one warp;
300: 75, three) laid **across the dimension**: thread t holds elements t, t + threads, ... of every
row, so the loads of a row are coalesced and its dot products are a reduction over the block.
- Registers: the input h (the centre's mean row for skip-gram, the window's mean for CBOW), its
  accumulated gradient and one pair's gradient, PER_THREAD values per thread (constant trip
  counts, so the compiler keeps them in registers).
- Shared memory (`shared_sizes`, dynamic, plus the chunk's kept words): the window's output rows for
  negative sampling (every target of the window and its shared noise words, each distinct row once,
  current value and value at load) while the window trains, added back to global memory at its
  end; the scratch of the dot-product reductions (a pair's scores, up to GROUP, reduced together:
  two barriers per pair); the window's lists. If the row cache does not fit the 48 KB a block may take
  (large dim x (2 window + negative)), the outputs are read and written in global memory instead.
- Thread 0 draws (subsampling, window, noise), the block trains: every other thread reads the
  draws from shared memory, so there is one random stream per chunk. (The draws are serial while
  the other threads wait; if a GPU profile shows them to matter, they are the next thing to spread.)
- Global memory, Hogwild: no locks between blocks. The input rows and the cached output rows get
  the window's change with atomic adds (no update of a frequent row is lost); Huffman inner nodes
  (hierarchical softmax) are read and written in place, as word2vec.c's threads do.
- The sigmoid and log-sigmoid tables in device memory (the CPU kernel's, model.py).

Why: Wombat (Simonton & Alaghband 2017: one thread block per sentence, negatives shared across a
window), BlazingText (Gupta & Khare 2017: the same, scaled to several GPUs) and FULL-W2V (Randall
et al.: the window's rows kept in registers and shared memory) all find that a GPU is fast at
word2vec when many windows run side by side, each reusing its rows from on-chip memory; a
batched gather/scatter over all examples (the torch kernel this one replaced) is bound by
global-memory traffic and had to bound the summed steps of frequent rows to stay stable.

Same as the CPU kernel: the model (skip-gram with the centre as input and per-pair updates of the
input, CBOW with the mean of the window's rows, fastText inputs as the mean of a word's rows and
`input_step`), negative sampling with the target skipped among its noise words, hierarchical
softmax over the Huffman path, saturated scores updating nothing (model.py `output_gradient`), the
update order within a window, and the random draws: subsampling, the dynamic window and the noise
draw are the functions of draws.py compiled for the device (`device_function`). The learning rate
falls linearly over the block, one value per chunk (the CPU kernel: per document).
Different: (1) skip-gram draws `negative` noise words once per window and every pair of the window
uses them (Wombat, BlazingText), where the CPU kernel draws them per pair: each pair's noise words
have the same distribution, only the pairs of one window are correlated; a window with one pair
trains exactly as the CPU kernel. (2) Windows do not cross chunk boundaries (the CPU kernel: only
document boundaries; gensim cuts at 10,000 words). (3) Each chunk has its own LCG state, from
(seed, epoch, rank, the chunk's index in the epoch) (`chunk_states`), so a run is replayable;
blocks train concurrently, so results are not bitwise reproducible across runs (Hogwild, as the
CPU kernel's threads). (4) A pair's scores are reduced in another order than the CPU's sequential
sum (float32 rounding), and all of them are computed before the pair's first update (the CPU
kernel: so for a window's first pair; a noise word drawn twice for a later pair sees its first
update there). (5) One launch copies its 3 statistics back: one synchronisation per block.
"""
from __future__ import annotations

import types

import numpy as np
from numba import cuda, float32, int32

from firth.workers.word2vec import draws, model

CHUNK = 256  # words per thread block, before subsampling ("a few hundred": many chunks in flight)
INFO = 5  # shared ints describing the current window (see _train_chunks)
PER_THREAD = 4  # row elements each thread holds (in registers): dim / 4 threads per block
GROUP = 32  # output scores reduced together (a pair's target and noise words; a Huffman path in pieces)
SHARED_LIMIT = 48 * 1024  # bytes of dynamic shared memory a block gets without opting in


def device_function(fn, **callees):
    """The Python function behind numba's `fn` compiled for the device, its calls to `callees`
    bound to their device versions: the device runs the same code as the CPU kernel."""
    py = fn.py_func
    scope = dict(py.__globals__, **callees)
    return cuda.jit(device=True)(types.FunctionType(py.__code__, scope, py.__name__, py.__defaults__,
                                                    py.__closure__))


_next_random = device_function(draws.next_random)
_subsample = device_function(draws.subsample, next_random=_next_random)
_window_span = device_function(draws.window_span, next_random=_next_random)
_noise_draw = device_function(draws.noise_draw, next_random=_next_random)
_output_gradient = device_function(model.output_gradient)
_skipgram_divisor = device_function(model.skipgram_divisor)
_input_step = device_function(model.input_step, skipgram_divisor=_skipgram_divisor)


def shared_sizes(dim: int, window: int, negative: int, threads: int, cached: bool) -> tuple[int, int]:
    """(float32 cells, int32 cells) of a block's dynamic shared memory: row cache (current, at
    load), reduction scratch and scores; then the chunk's kept words, the window's INFO cells and
    its lists (see `_window_lists`)."""
    slots = 2 * window + negative
    cache = 2 * slots * dim if cached and negative > 0 else 0
    return cache + GROUP * threads + GROUP, CHUNK + INFO + slots + 2 * (2 * window) + 2 * window * (negative + 1)


_shared_sizes = cuda.jit(device=True)(shared_sizes)


@cuda.jit(device=True)
def _slot(word, slot_word, n_slots):  # pragma: no cover (compiled)
    """The cache slot of an output word, added if new: (slot, n_slots)."""
    for s in range(n_slots):
        if slot_word[s] == word:
            return s, n_slots
    slot_word[n_slots] = word
    return n_slots, n_slots + 1


@cuda.jit(device=True)
def _window_lists(pos, n, kept, sg, window, negative, alias_prob, alias_idx, r, info, slot_word, pair_target,
                  pair_len, pair_outs):  # pragma: no cover (compiled)
    """Thread 0: the draws of position pos's window, in the CPU kernel's order (window, then noise),
    into shared memory: info = [., lo, hi, pairs, slots]; pair t's target word pair_target[t]
    and its negative-sampling outputs (target, then the window's noise words other than the
    target) as row-cache slots pair_outs[t (negative + 1) + j], j < pair_len[t]. Returns r."""
    lo, hi, r = _window_span(pos, n, window, r)
    pairs = 0
    if hi - lo >= 2:
        if sg:  # one pair per context word, the centre the input
            for c in range(lo, hi):
                if c != pos:
                    pair_target[pairs] = kept[c]
                    pairs += 1
        else:  # one pair: the context the input, the centre the target
            pair_target[0] = kept[pos]
            pairs = 1
    n_slots = 0
    if negative > 0 and pairs > 0:
        stride = negative + 1
        for t in range(pairs):
            s, n_slots = _slot(pair_target[t], slot_word, n_slots)
            pair_outs[t * stride] = s
            pair_len[t] = 1
        for _ in range(negative):  # drawn once, shared by the window's pairs
            noise, r = _noise_draw(alias_prob, alias_idx, r)
            s, n_slots = _slot(noise, slot_word, n_slots)
            for t in range(pairs):
                if noise != pair_target[t]:  # a draw equal to the pair's target is skipped
                    pair_outs[t * stride + pair_len[t]] = s
                    pair_len[t] += 1
    info[1] = lo
    info[2] = hi
    info[3] = pairs
    info[4] = n_slots
    return r


@cuda.jit(device=True)
def _output(hs, j, target, t, pair_outs, stride, slot_word, points, codes, syn1_at, syn1neg_at, cached, dim):
    """Output j of pair t: (its row's first element in its table, label). Hierarchical softmax:
    node j of the target's Huffman path in the state (code 1 is label 0, as word2vec.c). Negative
    sampling: j = 0 the target, then noise words; their slot in the row cache, or their row."""  # pragma: no cover
    if hs:
        return (syn1_at + points[target, j]) * dim, float32(1 - codes[target, j])
    s = pair_outs[t * stride + j]
    label = float32(1.0) if j == 0 else float32(0.0)
    return (s * dim, label) if cached else ((syn1neg_at + slot_word[s]) * dim, label)


@cuda.jit(device=True)
def _train_outputs(table, hs, count, target, t, pair_outs, stride, slot_word, points, codes, syn1_at, syn1neg_at,
                   cached, h, work, red, scores, tid, threads, dim, alpha, sig, logsig):  # pragma: no cover
    """Score h against `count` outputs in `table`, GROUP at a time (each thread its part of every
    dot product, then thread j sums output j's parts), then update them in order as the CPU
    kernel: work += g row, row += g h (each thread its own elements). Returns the loss."""
    loss = 0.0
    for first in range(0, count, GROUP):
        size = GROUP if count - first > GROUP else count - first  # noqa: FURB136 (no min on CUDA: draws.py)
        for j in range(size):
            base, _ = _output(hs, first + j, target, t, pair_outs, stride, slot_word, points, codes, syn1_at,
                              syn1neg_at, cached, dim)
            part = float32(0.0)
            for i in range(PER_THREAD):
                d = tid + i * threads
                if d < dim:
                    part += h[i] * table[base + d]
            red[j * threads + tid] = part
        cuda.syncthreads()
        for j in range(tid, size, threads):
            f = float32(0.0)
            for k in range(threads):
                f += red[j * threads + k]
            scores[j] = f
        cuda.syncthreads()
        for j in range(size):
            base, label = _output(hs, first + j, target, t, pair_outs, stride, slot_word, points, codes, syn1_at,
                                  syn1neg_at, cached, dim)
            g, part_loss = _output_gradient(scores[j], label, alpha, sig, logsig)
            loss += part_loss
            if g != 0:
                for i in range(PER_THREAD):
                    d = tid + i * threads
                    if d < dim:
                        out = table[base + d]
                        work[i] += g * out
                        table[base + d] = out + g * h[i]
    return loss


@cuda.jit(device=True)
def _add_rows(state, row_offsets, rows, word, grad, tid, threads, dim):  # pragma: no cover (compiled)
    """Every input row of `word` += grad (atomic: other blocks may update the row at the same time)."""
    for j in range(row_offsets[word], row_offsets[word + 1]):
        for i in range(PER_THREAD):
            d = tid + i * threads
            if d < dim:
                cuda.atomic.add(state, rows[j] * dim + d, grad[i])


@cuda.jit
def _train_chunks(state, dim, syn1neg_at, syn1_at, ids, chunk_offsets, chunk_states, row_offsets, rows, keep_prob,
                  alias_prob, alias_idx, codes, points, lengths, sg, negative, hs, window, cached, alpha_start,
                  alpha_end, sig, logsig, stats):  # pragma: no cover (compiled)
    """One thread block trains chunk blockIdx.x (module docstring). state: (rows x dim,) float32, the
    flat (rows, dim) state; syn1neg_at, syn1_at: the first row of each output block."""
    chunk, tid, threads = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
    # All shared memory is the dynamic allocation: numba's CUDA simulator (the CI tests) gives static
    # shared arrays out per call site without a lock, so two threads of a block could each get an
    # array of their own (seen as garbage word ids); the dynamic buffer is made once per block.
    floats = cuda.shared.array(0, float32)
    ints = cuda.shared.array(0, int32)  # the same dynamic memory (every dynamic array starts there)
    n_floats, _ = _shared_sizes(dim, window, negative, threads, cached)
    cache = n_floats - GROUP * threads - GROUP  # 2 x slots x dim or 0
    cur, at_load = floats[:cache // 2], floats[cache // 2:cache]
    red, scores = floats[cache:cache + GROUP * threads], floats[cache + GROUP * threads:n_floats]
    kept = ints[n_floats:n_floats + CHUNK]  # the chunk's words after subsampling
    info = ints[n_floats + CHUNK:n_floats + CHUNK + INFO]  # [kept words, lo, hi, pairs, slots] of the window
    lists = n_floats + CHUNK + INFO
    slots = 2 * window + negative
    slot_word = ints[lists:lists + slots]
    pair_target = ints[lists + slots:lists + slots + 2 * window]
    pair_len = ints[lists + slots + 2 * window:lists + slots + 4 * window]
    pair_outs = ints[lists + slots + 4 * window:]
    stride = negative + 1
    h = cuda.local.array(PER_THREAD, float32)  # (D / threads,) the input's mean
    grad = cuda.local.array(PER_THREAD, float32)  # the input's accumulated gradient
    work = cuda.local.array(PER_THREAD, float32)  # one pair's gradient

    start, stop = chunk_offsets[chunk], chunk_offsets[chunk + 1]
    alpha = float32(alpha_start + (alpha_end - alpha_start) * (start / (ids.shape[0] if ids.shape[0] > 0 else 1)))
    r = np.uint64(0)
    if tid == 0:
        r = chunk_states[chunk]
        n_kept, r = _subsample(ids, start, stop, keep_prob, kept, r)
        info[0] = n_kept
    cuda.syncthreads()
    n = info[0]
    loss, examples = 0.0, 0
    for pos in range(n):
        if tid == 0:
            r = _window_lists(pos, n, kept, sg, window, negative, alias_prob, alias_idx, r, info, slot_word,
                              pair_target, pair_len, pair_outs)
        cuda.syncthreads()
        lo, hi, pairs, n_slots = info[1], info[2], info[3], info[4]
        if pairs > 0:  # the same for every thread of the block: the barriers below are reached by all
            for s in range(n_slots if cached else 0):
                for i in range(PER_THREAD):
                    d = tid + i * threads
                    if d < dim:
                        value = state[(syn1neg_at + slot_word[s]) * dim + d]
                        cur[s * dim + d] = value
                        at_load[s * dim + d] = value
            for i in range(PER_THREAD):
                h[i] = 0.0
                grad[i] = 0.0
            step = float32(1.0)
            count = 0
            for c in range(lo, hi):
                if (c == pos) == bool(sg):  # skip-gram: the centre's rows; CBOW: the context's
                    w = kept[c]
                    if sg:
                        step = _input_step(rows, row_offsets[w], row_offsets[w + 1])
                    for j in range(row_offsets[w], row_offsets[w + 1]):
                        for i in range(PER_THREAD):
                            d = tid + i * threads
                            if d < dim:
                                h[i] += state[rows[j] * dim + d]
                        count += 1
            divisor = _skipgram_divisor(count) if sg else float32(count)  # CBOW: the mean of every row
            for i in range(PER_THREAD):
                h[i] *= float32(1.0) / divisor
            for t in range(pairs):
                for i in range(PER_THREAD):
                    work[i] = 0.0
                target = pair_target[t]
                if hs:
                    loss += _train_outputs(state, True, lengths[target], target, t, pair_outs, stride, slot_word,
                                           points, codes, syn1_at, syn1neg_at, cached, h, work, red, scores, tid,
                                           threads, dim, alpha, sig, logsig)
                if negative > 0:
                    loss += _train_outputs(cur if cached else state, False, pair_len[t], target, t, pair_outs,
                                           stride, slot_word, points, codes, syn1_at, syn1neg_at, cached, h, work,
                                           red, scores, tid, threads, dim, alpha, sig, logsig)
                for i in range(PER_THREAD):
                    grad[i] += work[i]
                    h[i] += step * work[i]  # skip-gram's next pair scores the moved input (CBOW: one pair)
            examples += pairs
            for s in range(n_slots if cached else 0):  # the window's change of its output rows
                for i in range(PER_THREAD):
                    d = tid + i * threads
                    if d < dim and cur[s * dim + d] != at_load[s * dim + d]:
                        cuda.atomic.add(state, (syn1neg_at + slot_word[s]) * dim + d,
                                        cur[s * dim + d] - at_load[s * dim + d])
            for c in range(lo, hi):
                if (c == pos) == bool(sg):
                    _add_rows(state, row_offsets, rows, kept[c], grad, tid, threads, dim)
        cuda.syncthreads()  # every thread is done with the window's lists before thread 0 draws the next
    if tid == 0:
        cuda.atomic.add(stats, 0, loss)
        cuda.atomic.add(stats, 1, float(examples))
        cuda.atomic.add(stats, 2, float(n))


def chunk_offsets(doc_offsets: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """(chunks+1,) int64: documents ids[doc_offsets[i]:doc_offsets[i+1]] cut into chunks of at most
    `chunk` words (an empty document has none)."""
    lengths = np.diff(doc_offsets)
    pieces = -(-lengths // chunk)  # ceil
    first = np.repeat(np.cumsum(pieces) - pieces, pieces)  # each chunk's document's first chunk
    starts = np.repeat(doc_offsets[:-1], pieces) + chunk * (np.arange(pieces.sum()) - first)
    return np.append(starts, doc_offsets[-1]).astype(np.int64)


_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def chunk_states(rng_state: np.ndarray, n: int) -> np.ndarray:
    """(n,) uint64 LCG states of the next n chunks, splitmix64 of the counter rng_state[0] (the
    epoch's state, from (seed, epoch, rank)) plus 1..n, which advances by n: a chunk's draws
    depend only on the seed, epoch, rank and its index in the epoch."""
    x = rng_state[:1] + np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN  # uint64 arrays wrap silently
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    rng_state[:1] += np.uint64(n) * np.ones(1, np.uint64) * _GOLDEN
    return x ^ (x >> np.uint64(31))


class DeviceTables:
    """The vocabulary tables of a run in device memory, loaded once (cuda.to_device)."""

    def __init__(self, row_offsets, rows, keep_prob, alias_prob, alias_idx, codes, points, lengths, sig, logsig):
        self.arrays = [cuda.to_device(np.ascontiguousarray(a)) for a in
                       (row_offsets, rows, keep_prob, alias_prob, alias_idx, codes, points, lengths)]
        self.sig, self.logsig = cuda.to_device(sig), cuda.to_device(logsig)


def train_block(state, syn1neg_at: int, syn1_at: int, tables: DeviceTables, ids: np.ndarray, doc_offsets: np.ndarray,
                sg: bool, negative: int, hs: bool, window: int, alpha_start: float, alpha_end: float,
                rng_state: np.ndarray, stats: np.ndarray, threads: int | None = None, cache: bool = True) -> None:
    """Train on a block of documents (flat ids, doc_offsets) in one launch; stats (3,) float64 +=
    (loss sum, examples, words kept). state: the (rows, dim) float32 state on the device (numba
    device array, e.g. cuda.as_cuda_array of a torch tensor; a numpy array under the simulator);
    syn1neg_at, syn1_at: its first negative-sampling and Huffman rows (Layout.views). rng_state
    (1,) uint64 advances (`chunk_states`). threads: per block (default dim / PER_THREAD);
    cache=False keeps the output rows in global memory (tests)."""
    dim = state.shape[1]
    # PER_THREAD elements per thread: a warp's lanes run in lockstep, so dim 100 on 25 threads costs
    # the same instructions as on 32, and the reductions sum fewer parts
    threads = threads or -(-dim // PER_THREAD)
    if threads > 1024:
        raise ValueError(f"word2vec on CUDA: model.dim {dim} is more than a thread block holds (1024 threads x "
                         f"{PER_THREAD} elements); lower model.dim to {1024 * PER_THREAD} or less")
    assert dim <= threads * PER_THREAD, "threads x PER_THREAD must cover dim"
    n_floats, n_ints = shared_sizes(dim, window, negative, threads, cache)
    if cache and 4 * (n_floats + n_ints) > SHARED_LIMIT:  # the rows stay in global memory (module docstring)
        cache = False
        n_floats, n_ints = shared_sizes(dim, window, negative, threads, cache)
    if 4 * (n_floats + n_ints) > SHARED_LIMIT:
        raise ValueError(f"word2vec on CUDA: model.window {window} and model.negative {negative} need "
                         f"{4 * (n_floats + n_ints)} bytes of shared memory per thread block, more than "
                         f"{SHARED_LIMIT}; lower model.window or model.negative")
    offsets = chunk_offsets(np.asarray(doc_offsets, np.int64))
    n_chunks = len(offsets) - 1
    if n_chunks == 0:
        return
    device_stats = cuda.to_device(np.zeros(3))
    _train_chunks[n_chunks, threads, 0, 4 * (n_floats + n_ints)](
        state.reshape(-1), dim, syn1neg_at, syn1_at, cuda.to_device(np.ascontiguousarray(ids, np.int32)),
        cuda.to_device(offsets), cuda.to_device(chunk_states(rng_state, n_chunks)), *tables.arrays, sg, negative, hs,
        window, cache, alpha_start, alpha_end, tables.sig, tables.logsig, device_stats)
    stats += device_stats.copy_to_host()
