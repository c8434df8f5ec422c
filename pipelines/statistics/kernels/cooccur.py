"""Co-occurrence counts as Stanford GloVe's `cooccur` (symmetric=1), exact and memory-bounded.

Definition. Out-of-vocabulary tokens (id -1) are removed first, so windows span over them. For
every position p of a document and every earlier position q of the same document with
d = p - q <= window:

    X[ids[q], ids[p]] += w(d)   and   X[ids[p], ids[q]] += w(d)
    w(d) = 1/d ("harmonic", GloVe's default) or 1 ("uniform")

so X is symmetric and a pair (a, a) gets 2·w(d). Windows never cross documents.

Exactness. Sums are kept as int64 *weight units*: w(d) = units[d] / scale with
scale = lcm(1..window) for harmonic windows ≤ 22 (exact: 1/d = (scale/d)/scale), 2**28 with
rounded units above that (error ≤ 2**-29 per addition), 1 for uniform. Integer sums do not depend
on how documents are split into batches, shards or workers, nor on merge order; x = units / scale
is rounded to float32 once, at the end. A pair may accumulate up to 2**63 / scale units
(≥ 3.4e10 harmonic-weighted co-occurrences) before int64 overflows.

Memory (as GloVe's `-memory`). Ids are frequency ranks, so small ids are frequent. Counting keeps
each unordered pair (lo, hi), lo <= hi, once:
  - dense block: pairs with (lo + 1)·(hi + 1) <= P (GloVe's hyperbolic `max_product`), P chosen
    so the block fills half of `memory_bytes`; one int64 per pair, updated in place;
  - pair buffer (the other half): the remaining pairs are appended as (key, units); when full it
    is radix-sorted and reduced in place, and set aside as a sorted run once it stays over half
    full. Runs are merged (sizes kept geometric); their total is bounded by the shard's distinct pairs.
The result expands (lo, hi) into both directions and splits by bucket i % n_buckets.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from numba import njit

from firth.pipelines.statistics.kernels import bucketing, sorted_runs
from firth.pipelines.statistics.kernels.bucketing import Cooc
from firth.pipelines.statistics.kernels.documents import checked_offsets, drop_out_of_vocabulary

WEIGHTINGS = ("harmonic", "uniform")
DEFAULT_MEMORY_BYTES = 128 << 20  # 64 MiB dense block + 64 MiB pair buffer (with its sort scratch)
_EXACT_SCALE_LIMIT = 1 << 28


def weight_units(window: int, weighting: str) -> tuple[int, np.ndarray]:
    """(scale, units): a pair d apart adds units[d] / scale; units is (window + 1,) int64, units[0] unused."""
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"co-occurrence window must be an integer ≥ 1 (statistics.window), got {window!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"co-occurrence weighting must be one of {WEIGHTINGS} (statistics.weighting), "
                         f"got {weighting!r}")
    distance = np.arange(window + 1, dtype=np.int64)
    if weighting == "uniform":
        return 1, np.where(distance > 0, 1, 0).astype(np.int64)
    scale = math.lcm(*range(1, window + 1))
    if scale > _EXACT_SCALE_LIMIT:
        scale = _EXACT_SCALE_LIMIT
        units = np.rint(scale / np.maximum(distance, 1)).astype(np.int64)
    else:
        units = scale // np.maximum(distance, 1)
    units[0] = 0
    return int(scale), units


class CooccurrenceCounter:
    """Accumulates one shard's co-occurrences over batches of documents; `result()` gives the buckets.

    vocab_size: ids are in [0, vocab_size); memory_bytes: dense block + pair buffer (the sorted
    runs of distinct pairs come on top, bounded by the shard's number of distinct pairs).

    Out of core: with `spill(bucket, piece)`, the in-memory runs are bounded too: once they pass
    a quarter of memory_bytes they are spilled, bucket by bucket (i % n_buckets): one directed piece
    per bucket, sorted by (i, j), handed to `spill` (which writes it as a run file); `finish()` spills
    the rest together with the dense block. A bucket gets more than one piece of a spill only when its
    distinct entries overflow the pair buffer (a few buckets, or a very skewed one). Working memory
    then stays within about memory_bytes.
    """

    def __init__(self, window: int, weighting: str, vocab_size: int, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 spill: Callable[[int, Cooc], None] | None = None, n_buckets: int = 1):
        self.window = int(window)
        self.scale, self._units = weight_units(window, weighting)
        if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 0:
            raise ValueError(f"co-occurrence vocab_size must be an integer ≥ 0, got {vocab_size!r}")
        if memory_bytes < 1:
            raise ValueError(f"co-occurrence memory_bytes must be positive, got {memory_bytes!r}")
        if not isinstance(n_buckets, (int, np.integer)) or n_buckets < 1:
            raise ValueError(f"co-occurrence n_buckets must be an integer ≥ 1 (statistics.n_buckets), "
                             f"got {n_buckets!r}")
        self.vocab_size = int(vocab_size)
        self._spill, self._n_buckets = spill, int(n_buckets)
        self._shift = max(self.vocab_size - 1, 1).bit_length()  # sparse key = lo << shift | hi
        # Without spill: dense block and pair buffer get half of the budget each, runs stay in memory.
        # With spill: a quarter each for dense block, pair buffer, in-memory runs and spill scratch
        # (a spill sorts each bucket in the pair buffer; the scratch holds bucket tags and the piece handed out).
        share = memory_bytes // 4 if spill else memory_bytes // 2
        self._row_limit, self._row_start = dense_layout(self.vocab_size, share // 8)
        self._dense = np.zeros(self._row_start[-1], np.int64)  # (lo, hi) at row_start[lo] + hi - lo
        capacity = max(share // 32, 4 * self.window + 16)  # keys, units + their sort scratch
        self._keys = np.empty(capacity, np.int64)
        self._values = np.empty(capacity, np.int64)
        self._scratch = (np.empty(capacity, np.int64), np.empty(capacity, np.int64))
        self._filled = 0
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # sorted unique (key, units), sizes decreasing
        self._run_capacity = max(share // 16, 1)  # entries of in-memory runs before they spill
        self.spills = 0  # times the counter spilled, finish() included
        self.spilled_runs = 0  # pieces handed to `spill`

    def add(self, ids: np.ndarray, offsets: np.ndarray) -> None:
        """Count one batch: ids (n_tokens,) int, -1 = out of vocabulary; offsets (n_docs + 1,) int."""
        ids, offsets = _in_vocabulary(ids, offsets, self.vocab_size)
        doc, position = 0, 0
        while True:
            doc, position, self._filled = _count_pairs(
                ids, offsets, doc, position, self.window, self._units, self._row_limit, self._row_start,
                self._dense, self._shift, self._keys, self._values, self._filled)
            if doc == len(offsets) - 1:
                return
            self._flush(final=False)  # buffer full: reduce it, maybe set it aside as a run

    def result(self, n_buckets: int) -> list[Cooc]:
        """Per bucket b: the entries with i % n_buckets == b, sorted by (i, j). The counter stays usable."""
        if not isinstance(n_buckets, (int, np.integer)) or n_buckets < 1:
            raise ValueError(f"co-occurrence n_buckets must be an integer ≥ 1 (statistics.n_buckets), "
                             f"got {n_buckets!r}")
        self._flush(final=True)
        sparse = sorted_runs.merge_runs(self._runs)
        self._runs = [sparse] if len(sparse[0]) else []
        i, j, units, bucket_starts = _directed_buckets(self._dense, self._row_limit, self._row_start, *sparse,
                                                       self._shift, self.vocab_size, int(n_buckets))
        return [Cooc(i[a:b], j[a:b], units[a:b], self.scale) for a, b in zip(bucket_starts[:-1], bucket_starts[1:])]

    def _flush(self, final: bool) -> None:
        capacity = len(self._keys)
        filled = self._filled
        sorted_runs.radix_sort(self._keys[:filled], self._values[:filled], 2 * self._shift, *self._scratch)
        n = sorted_runs.reduce_sorted(self._keys, self._values, filled)
        if final or n > capacity // 2:  # still over half full after reducing: set it aside
            if n:
                self._runs.append((self._keys[:n].copy(), self._values[:n].copy()))
            self._filled = 0
            while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
                last = self._runs.pop()
                self._runs[-1] = sorted_runs.merge_sum(*self._runs[-1], *last)
            if self._spill and sum(len(k) for k, _ in self._runs) > self._run_capacity:
                self._spill_buckets(with_dense=False)
        else:
            self._filled = n

    def finish(self) -> None:
        """Spill mode: hand everything counted to `spill` as (bucket, sorted piece); the counter is then spent.

        Every piece is sorted by (i, j) and holds rows i ≡ bucket (mod n_buckets); a bucket's pieces
        from all shards sum (merge_cooccurrence, or a bounded merge of run files) to its entries.
        """
        if self._spill is None:
            raise ValueError("CooccurrenceCounter.finish() needs a spill callback; use result() without one")
        self._flush(final=True)
        self._spill_buckets(with_dense=True)
        self._keys = self._values = np.zeros(0, np.int64)
        self._scratch = (self._keys, self._values)
        self._dense = np.zeros(0, np.int64)
        self._row_limit, self._row_start = np.zeros(0, np.int64), np.zeros(1, np.int64)

    def _spill_buckets(self, with_dense: bool) -> None:
        """Spill the runs (and, with_dense, the dense block's non-zero cells) as one piece per bucket: its
        directed entries gathered into the pair buffer (empty between batches), sorted and summed there.

        Extra memory: the runs' bucket tags, 2 bytes a run entry up to 256 buckets (an eighth of the runs),
        and the piece handed to `spill`, 16 bytes an entry for at most the pair buffer's capacity. Extra
        work: the tags are read once per bucket (n_buckets passes of byte compares over the runs), which
        costs less than the merge pass that pieces past merge_fan_in would add.
        """
        runs, self._runs = self._runs, []
        tags = [bucketing.bucket_tags(keys, self._shift, self._n_buckets) for keys, _ in runs]  # (lo, hi) buckets
        n_rows = len(self._row_limit) if with_dense else 0
        self.spills += 1
        for bucket in range(self._n_buckets):
            filled = 0
            for (keys, units), (lo_bucket, hi_bucket) in zip(runs, tags):
                start = 0
                while start < len(keys):
                    start, filled = bucketing.gather_sparse(keys, units, lo_bucket, hi_bucket, start, bucket,
                                                            self._shift, self._keys, self._values, filled)
                    if start < len(keys):  # buffer full
                        filled = self._sort_bucket(bucket, filled, final=False)
            lo, hi = 0, 0
            while lo < n_rows:
                lo, hi, filled = bucketing.gather_dense(self._dense, self._row_limit, self._row_start, lo, hi,
                                                        bucket, self._n_buckets, self._shift, self._keys,
                                                        self._values, filled)
                if lo < n_rows:  # buffer full
                    filled = self._sort_bucket(bucket, filled, final=False)
            self._sort_bucket(bucket, filled, final=True)

    def _sort_bucket(self, bucket: int, filled: int, final: bool) -> int:
        """Sort and sum the buffer's `filled` entries of `bucket`; hand them to `spill` as one piece when final
        or still over half full (as _flush sets runs aside), else keep them. Returns the entries kept."""
        keys, values = self._keys, self._values
        sorted_runs.radix_sort(keys[:filled], values[:filled], 2 * self._shift, *self._scratch)
        n = sorted_runs.reduce_sorted(keys, values, filled)
        if not final and n <= len(keys) // 2:
            return n
        if n:
            mask = (1 << self._shift) - 1
            self._spill(bucket, Cooc((keys[:n] >> self._shift).astype(np.int32), (keys[:n] & mask).astype(np.int32),
                                     values[:n].copy(), self.scale))
            self.spilled_runs += 1
        return 0


def cooccurrence(ids: np.ndarray, offsets: np.ndarray, window: int, weighting: str, n_buckets: int, *,
                 vocab_size: int | None = None, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> list[Cooc]:
    """One batch's co-occurrence buckets (see the module docstring); vocab_size defaults to max id + 1.

    For a shard read in several batches, one CooccurrenceCounter (add per batch, result once) does
    the same with one dense block per shard instead of one per batch.
    """
    ids = np.asarray(ids)
    if vocab_size is None:
        vocab_size = int(ids.max()) + 1 if len(ids) else 0
    # a batch makes at most window·n pair updates: more memory than 64 bytes per update stays unused
    memory_bytes = min(memory_bytes, max(64 * int(window) * len(ids), 1 << 16))
    counter = CooccurrenceCounter(window, weighting, vocab_size, memory_bytes)
    counter.add(ids, offsets)
    return counter.result(n_buckets)


def merge_cooccurrence(parts: list[Cooc]) -> Cooc:
    """Sum units over equal (i, j) of parts sorted by (i, j); exact, independent of part order."""
    parts = list(parts)
    if not parts:
        raise ValueError("merge_cooccurrence: no parts given; pass at least one Cooc (an empty one is fine)")
    scales = {p.scale for p in parts}
    if len(scales) > 1:
        raise ValueError(f"merge_cooccurrence: parts have different scales {sorted(scales)}: they were counted with "
                         "different statistics.window or weighting; recount them with one setting")
    runs = []
    for n, part in enumerate(parts):
        keys = (np.asarray(part.i, np.int64) << 32) | np.asarray(part.j, np.int64)
        if not sorted_runs.is_sorted_unique(keys) or (len(keys) and (part.i.min() < 0 or part.j.min() < 0)):
            raise ValueError(f"merge_cooccurrence: part {n} is not sorted by (i, j) without duplicates, or has a "
                             "negative id; pass parts as cooccurrence() returns them")
        runs.append((keys, np.asarray(part.units, np.int64)))
    keys, units = sorted_runs.merge_runs(runs)
    return Cooc((keys >> 32).astype(np.int32), (keys & 0xFFFFFFFF).astype(np.int32), units, scales.pop())


def dense_layout(vocab_size: int, max_entries: int) -> tuple[np.ndarray, np.ndarray]:
    """(row_limit, row_start) of the dense block: pair (lo, hi), lo <= hi, is dense iff lo < len(row_limit)
    and hi < row_limit[lo]; it lives at row_start[lo] + hi - lo. Rows are GloVe's hyperbola
    (lo + 1)·(hi + 1) <= P, with the largest P whose block has at most max_entries entries."""
    def limits(product: int) -> np.ndarray:
        lo = np.arange(min(vocab_size, math.isqrt(product) + 1), dtype=np.int64)
        limit = np.minimum(vocab_size, product // (lo + 1))
        return limit[limit > lo]  # limit - lo decreases, so this is a prefix

    def size(limit: np.ndarray) -> int:
        return int((limit - np.arange(len(limit))).sum())

    low, high = 0, vocab_size * vocab_size  # P = V² is the full triangle
    while low < high:  # largest P with size(limits(P)) <= max_entries
        mid = (low + high + 1) // 2
        low, high = (mid, high) if size(limits(mid)) <= max_entries else (low, mid - 1)
    row_limit = limits(low)
    row_start = np.zeros(len(row_limit) + 1, np.int64)
    np.cumsum(row_limit - np.arange(len(row_limit)), out=row_start[1:])
    return row_limit, row_start


def _in_vocabulary(ids, offsets, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated (ids without -1, offsets into them): int32 (n_kept,), int64 (n_docs + 1,)."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"co-occurrence ids must be a 1-d integer array (vocabulary ids), got {ids.dtype} {ids.shape}")
    offsets = checked_offsets(offsets, len(ids), "co-occurrence")
    if len(ids) and (ids.min() < -1 or ids.max() >= vocab_size):
        raise ValueError(f"co-occurrence ids must be in [0, vocab_size={vocab_size}) or -1 (out of vocabulary), "
                         f"got values in [{ids.min()}, {ids.max()}]; pass the vocabulary's size")
    ids, offsets = drop_out_of_vocabulary(ids, offsets)
    return ids.astype(np.int32, copy=False), offsets


@njit(cache=True)
def _count_pairs(ids, offsets, doc, position, window, units, row_limit, row_start, dense, shift,
                 keys, values, filled):
    """Add the pairs of ids[offsets[doc] + position:] until done or the buffer might overflow.

    Returns the resume point (doc, position within doc, buffer fill); doc == n_docs when done.
    """
    n_docs = len(offsets) - 1
    n_rows = len(row_limit)
    capacity = len(keys)
    while doc < n_docs:
        start, end = offsets[doc], offsets[doc + 1]
        for p in range(start + position, end):
            if filled + window > capacity:
                return doc, p - start, filled
            a = np.int64(ids[p])
            for q in range(max(start, p - window), p):
                b = np.int64(ids[q])
                lo, hi = (a, b) if a < b else (b, a)
                if lo < n_rows and hi < row_limit[lo]:
                    dense[row_start[lo] + hi - lo] += units[p - q]
                else:
                    keys[filled] = (lo << shift) | hi
                    values[filled] = units[p - q]
                    filled += 1
        doc += 1
        position = 0
    return doc, 0, filled


@njit(cache=True)
def _directed_buckets(dense, row_limit, row_start, sparse_keys, sparse_values, shift, vocab_size, n_buckets):
    """Both directions of the (lo, hi) sums, grouped by bucket i % n_buckets, each sorted by (i, j).

    A transpose by counting sort, linear: row i of the output is (i, j < i), taken from column i of
    the upper triangle, then (i, j >= i), from its row i (diagonal doubled). Scanning the dense block
    row-major and then the sorted sparse run visits every row by ascending hi and every column by
    ascending lo, because dense cells of a row (or column) precede its sparse ones (hi < row_limit[lo],
    row_limit non-increasing). Returns i, j (n,) int32, units (n,) int64, bucket_starts (n_buckets + 1,).
    """
    mask = (1 << shift) - 1
    n_lower = np.zeros(vocab_size, np.int64)  # per row i: entries (i, j) with j < i
    n_upper = np.zeros(vocab_size, np.int64)  # per row i: entries (i, j) with j >= i
    for lo in range(len(row_limit)):
        base = row_start[lo] - lo
        for hi in range(lo, row_limit[lo]):
            if dense[base + hi] != 0:
                n_upper[lo] += 1
                n_lower[hi] += lo != hi
    for x in range(len(sparse_keys)):
        lo, hi = sparse_keys[x] >> shift, sparse_keys[x] & mask
        n_upper[lo] += 1
        n_lower[hi] += lo != hi

    lower_cursor = np.empty(vocab_size, np.int64)  # next output slot of row i, left and right of the diagonal
    upper_cursor = np.empty(vocab_size, np.int64)
    bucket_starts = np.zeros(n_buckets + 1, np.int64)
    n = 0
    for b in range(n_buckets):  # buckets in order, rows ascending within one
        bucket_starts[b] = n
        for row in range(b, vocab_size, n_buckets):
            lower_cursor[row] = n
            upper_cursor[row] = n + n_lower[row]
            n += n_lower[row] + n_upper[row]
    bucket_starts[n_buckets] = n

    i = np.empty(n, np.int32)
    j = np.empty(n, np.int32)
    units = np.empty(n, np.int64)
    for lo in range(len(row_limit)):
        base = row_start[lo] - lo
        for hi in range(lo, row_limit[lo]):
            if dense[base + hi] != 0:
                _place(lo, hi, dense[base + hi], i, j, units, lower_cursor, upper_cursor)
    for x in range(len(sparse_keys)):
        _place(sparse_keys[x] >> shift, sparse_keys[x] & mask, sparse_values[x], i, j, units,
               lower_cursor, upper_cursor)
    return i, j, units, bucket_starts


@njit(cache=True, inline="always")
def _place(lo, hi, value, i, j, units, lower_cursor, upper_cursor):
    k = upper_cursor[lo]
    i[k], j[k], units[k] = lo, hi, 2 * value if lo == hi else value  # both directions land on (a, a)
    upper_cursor[lo] = k + 1
    if lo != hi:
        k = lower_cursor[hi]
        i[k], j[k], units[k] = hi, lo, value
        lower_cursor[hi] = k + 1
