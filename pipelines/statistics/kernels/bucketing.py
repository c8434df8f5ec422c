"""Directed co-occurrence entries (`Cooc`) grouped by output bucket (i % n_buckets), each group sorted by (i, j).

The counter keeps unordered pairs (lo, hi) packed as lo << shift | hi; what leaves it (a spilled
run, a cached shard's remapped entries) is directed (i, j) and split by bucket. One radix sort
on the composite key  bucket << 2·shift | i << shift | j  gives all buckets at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


# bytes of working memory per undirected input entry in `undirected_pieces` (two directed entries,
# each: key, value, two scratch words, and the i/j/units expansion on the way): sizes spill slices
BYTES_PER_UNDIRECTED_ENTRY = 112


def key_shift(vocab_size: int) -> int:
    """Bits of one id in a packed pair key."""
    return max(int(vocab_size) - 1, 1).bit_length()


def undirected_pieces(keys: np.ndarray, units: np.ndarray, shift: int, n_buckets: int,
                      scale: int) -> list[tuple[int, Cooc]]:
    """Both directions of unordered pairs: keys (n,) int64 lo << shift | hi (lo <= hi), units (n,) int64
    → [(bucket, Cooc sorted by (i, j))] for the non-empty buckets. (a, a) gets 2·units, as in the counter."""
    mask = (1 << shift) - 1
    lo, hi = keys >> shift, keys & mask
    off_diagonal = lo != hi
    i = np.concatenate([lo, hi[off_diagonal]])  # (n + n_off,)
    j = np.concatenate([hi, lo[off_diagonal]])
    values = np.concatenate([np.where(off_diagonal, units, 2 * units), units[off_diagonal]])
    del lo, hi, off_diagonal
    return directed_pieces(i, j, values, shift, n_buckets, scale)


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


def dense_pairs(dense: np.ndarray, row_start: np.ndarray, shift: int, cells: np.ndarray):
    """Cells of the dense (lo, hi) block, ascending flat indices (nz,) → (keys lo << shift | hi, units):
    row-major order of the block is key order, so the keys come sorted."""
    lo = np.searchsorted(row_start, cells, side="right") - 1
    hi = cells - row_start[lo] + lo
    return (lo << shift) | hi, dense[cells]
