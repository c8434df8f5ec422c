"""Directed co-occurrence entries (`Cooc`) grouped by output bucket (i % n_buckets), each group sorted by (i, j).

The counter keeps unordered pairs (lo, hi) packed as lo << shift | hi; what leaves it (a spilled
run, a cached shard's remapped entries) is directed (i, j) and split by bucket. A cached shard's
entries: one radix sort on the composite key  bucket << 2·shift | i << shift | j  gives all buckets
at once. A spill: bucket by bucket, `gather_sparse` / `gather_dense` copy that bucket's directed
entries out of every in-memory run and the dense block into one bounded buffer, so that each spill
writes one piece per bucket (a merge then reads few run files per bucket and shard).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from firth.pipelines.statistics.kernels import sorted_runs


@dataclass(frozen=True)
class Cooc:
    """Co-occurrence entries sorted by (i, j), unique: X[i, j] = units / scale."""
    i: np.ndarray  # (n,) int32
    j: np.ndarray  # (n,) int32
    units: np.ndarray  # (n,) int64, exact integer weight sums
    scale: int  # see cooccur.weight_units(); equal for all parts of one run

    @property
    def x(self) -> np.ndarray:
        """(n,) float32: units / scale, computed in float64 and rounded once."""
        return (self.units / self.scale).astype(np.float32)

    def __len__(self) -> int:
        return len(self.i)


# bytes of working memory per undirected entry turned into its two directed entries (each: key,
# value, two scratch words, and the i/j/units expansion on the way): sizes the chunks in which a
# cached shard's entries are re-bucketed (pipelines/statistics/steps.py)
BYTES_PER_UNDIRECTED_ENTRY = 112


def key_shift(vocab_size: int) -> int:
    """Bits of one id in a packed pair key."""
    return max(int(vocab_size) - 1, 1).bit_length()


def directed_pieces(i: np.ndarray, j: np.ndarray, units: np.ndarray, shift: int, n_buckets: int,
                    scale: int) -> list[tuple[int, Cooc]]:
    """Directed entries, unique (i, j), any order → [(bucket, Cooc sorted by (i, j))], non-empty buckets."""
    n_buckets = int(n_buckets)
    bucket_bits = max(n_buckets - 1, 1).bit_length()
    if 2 * shift + bucket_bits > 62:
        raise ValueError(f"co-occurrence: a vocabulary of 2**{shift} ids with {n_buckets} buckets does not fit "
                         "one 63-bit sort key; lower statistics.n_buckets or statistics.max_vocab_size")
    i = np.asarray(i, np.int64)
    sort_keys = ((i % n_buckets) << (2 * shift)) | (i << shift) | np.asarray(j, np.int64)  # (n,)
    values = np.array(units, np.int64)  # a copy: sorted in place
    n = len(sort_keys)
    sorted_runs.radix_sort(sort_keys, values, 2 * shift + bucket_bits, np.empty(n, np.int64), np.empty(n, np.int64))
    starts = np.searchsorted(sort_keys >> (2 * shift), np.arange(n_buckets + 1))  # (n_buckets + 1,)
    mask = (1 << shift) - 1
    pieces = []
    for bucket in range(n_buckets):
        a, b = starts[bucket], starts[bucket + 1]
        if b > a:
            part = sort_keys[a:b]
            pieces.append((bucket, Cooc(((part >> shift) & mask).astype(np.int32), (part & mask).astype(np.int32),
                                        values[a:b].copy(), scale)))
    return pieces


def bucket_tags(keys: np.ndarray, shift: int, n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Buckets of both ends of unordered pairs keys (n,) lo << shift | hi: (lo % n_buckets, hi % n_buckets),
    each (n,) of the smallest unsigned type that holds them (1 byte up to 256 buckets). Computed once per
    spill, so that the per-bucket gathers compare bytes instead of dividing."""
    dtype = np.min_scalar_type(int(n_buckets) - 1)
    lo_bucket, hi_bucket = np.empty(len(keys), dtype), np.empty(len(keys), dtype)
    _fill_bucket_tags(keys, shift, n_buckets, lo_bucket, hi_bucket)
    return lo_bucket, hi_bucket


@njit(cache=True)
def _fill_bucket_tags(keys, shift, n_buckets, lo_bucket, hi_bucket):
    mask = (1 << shift) - 1
    for x in range(len(keys)):
        lo_bucket[x] = (keys[x] >> shift) % n_buckets
        hi_bucket[x] = (keys[x] & mask) % n_buckets


@njit(cache=True)
def gather_sparse(keys, units, lo_bucket, hi_bucket, start, bucket, shift, out_keys, out_units, filled):
    """Append to out_*[filled:] the directed entries (key i << shift | j) of `bucket` made from the unordered
    pairs keys[start:] (lo << shift | hi, with bucket_tags lo_bucket, hi_bucket): (lo, hi) where lo is in the
    bucket (units doubled on the diagonal, as the counter's result), (hi, lo) where hi is and hi != lo.
    Stops before out_* overflows; returns (where to resume in keys, filled); len(keys) when done."""
    mask = (1 << shift) - 1
    capacity = len(out_keys)
    for x in range(start, len(keys)):
        if filled + 2 > capacity:
            return x, filled
        lo_in, hi_in = lo_bucket[x] == bucket, hi_bucket[x] == bucket
        if lo_in or hi_in:
            filled = _append_directed(keys[x] >> shift, keys[x] & mask, units[x], lo_in, hi_in, shift,
                                      out_keys, out_units, filled)
    return len(keys), filled


@njit(cache=True)
def gather_dense(dense, row_limit, row_start, lo, hi, bucket, n_buckets, shift, out_keys, out_units, filled):
    """As gather_sparse, over the non-zero cells (lo, hi) of the counter's dense block (see
    cooccur.dense_layout) from cell (lo, hi) on, row-major. A row lo in the bucket is read whole, any other
    row only at its columns hi in the bucket. Returns (lo, hi) to resume at and filled; lo == len(row_limit)
    when done."""
    capacity = len(out_keys)
    while lo < len(row_limit):
        row_in = lo % n_buckets == bucket
        hi = max(hi, lo)
        if not row_in:
            hi += (bucket - hi) % n_buckets  # the first column of the bucket from hi on
        step = 1 if row_in else n_buckets
        column_bucket = hi % n_buckets  # kept up to date without a division per cell
        base = row_start[lo] - lo
        while hi < row_limit[lo]:
            if filled + 2 > capacity:
                return lo, hi, filled
            value = dense[base + hi]
            if value != 0:
                filled = _append_directed(lo, hi, value, row_in, column_bucket == bucket, shift,
                                          out_keys, out_units, filled)
            hi += step
            column_bucket += step
            if column_bucket >= n_buckets:
                column_bucket -= n_buckets
        lo += 1
        hi = 0
    return lo, 0, filled


@njit(cache=True, inline="always")
def _append_directed(lo, hi, value, lo_in, hi_in, shift, out_keys, out_units, filled):
    if lo_in:
        out_keys[filled] = (lo << shift) | hi
        out_units[filled] = 2 * value if lo == hi else value  # both directions land on (a, a)
        filled += 1
    if hi_in and lo != hi:
        out_keys[filled] = (hi << shift) | lo
        out_units[filled] = value
        filled += 1
    return filled
