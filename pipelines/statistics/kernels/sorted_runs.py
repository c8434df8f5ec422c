"""Sorted runs of (int64 key, int64 value) pairs: radix sort, reduce, merge (numba).

Co-occurrence counts travel as such runs: key = a packed (i, j) pair, value = integer weight
units. Integer sums are exact, so merging runs in any order or grouping gives the same bytes.
A run is "sorted unique": keys strictly increasing.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def radix_sort(keys, values, key_bits, scratch_keys, scratch_values):
    """Sort `keys` (and `values` along) in place, stable LSD radix sort.

    keys, values: (n,) int64, keys in [0, 2**key_bits); scratch_*: (≥ n,) int64 work space.
    """
    n = keys.shape[0]
    if n < 2 or key_bits <= 0:
        return
    passes = (key_bits + 11) // 12  # digits of ≤ 12 bits: the 4096 counters stay in L1
    width = (key_bits + passes - 1) // passes
    mask = (1 << width) - 1
    counts = np.empty(1 << width, np.int64)
    src_k, src_v, dst_k, dst_v = keys, values, scratch_keys[:n], scratch_values[:n]
    in_scratch = False  # where the latest pass left the data
    for p in range(passes):
        shift = p * width
        counts[:] = 0
        for x in range(n):
            counts[(src_k[x] >> shift) & mask] += 1
        if counts.max() == n:  # every key has the same digit: the pass would not move anything
            continue
        total = 0
        for c in range(counts.shape[0]):
            count = counts[c]
            counts[c] = total
            total += count
        for x in range(n):
            k = src_k[x]
            digit = (k >> shift) & mask
            dst_k[counts[digit]] = k
            dst_v[counts[digit]] = src_v[x]
            counts[digit] += 1
        src_k, dst_k = dst_k, src_k
        src_v, dst_v = dst_v, src_v
        in_scratch = not in_scratch
    if in_scratch:
        keys[:] = src_k
        values[:] = src_v


@njit(cache=True)
def reduce_sorted(keys, values, n):
    """Sum `values` over equal neighbouring keys of sorted keys[:n] in place; returns the unique count."""
    if n == 0:
        return 0
    u = 0
    for x in range(1, n):
        if keys[x] == keys[u]:
            values[u] += values[x]
        else:
            u += 1
            keys[u] = keys[x]
            values[u] = values[x]
    return u + 1


@njit(cache=True)
def merge_sum(a_keys, a_values, b_keys, b_values):
    """Merge two sorted unique runs into one, summing the values of keys present in both."""
    n_a, n_b = a_keys.shape[0], b_keys.shape[0]
    keys = np.empty(n_a + n_b, np.int64)
    values = np.empty(n_a + n_b, np.int64)
    x = y = n = 0
    while x < n_a and y < n_b:
        if a_keys[x] < b_keys[y]:
            keys[n], values[n] = a_keys[x], a_values[x]
            x += 1
        elif b_keys[y] < a_keys[x]:
            keys[n], values[n] = b_keys[y], b_values[y]
            y += 1
        else:
            keys[n], values[n] = a_keys[x], a_values[x] + b_values[y]
            x += 1
            y += 1
        n += 1
    while x < n_a:
        keys[n], values[n] = a_keys[x], a_values[x]
        x += 1
        n += 1
    while y < n_b:
        keys[n], values[n] = b_keys[y], b_values[y]
        y += 1
        n += 1
    return keys[:n].copy(), values[:n].copy()


def merge_runs(runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One sorted unique run from many: pairwise merges in a balanced tree, O(total · log k)."""
    runs = [r for r in runs if len(r[0])]
    if not runs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    while len(runs) > 1:
        merged = [merge_sum(*runs[k], *runs[k + 1]) for k in range(0, len(runs) - 1, 2)]
        runs = merged + ([runs[-1]] if len(runs) % 2 else [])
    return runs[0]


def is_sorted_unique(keys: np.ndarray) -> bool:
    return bool(np.all(keys[1:] > keys[:-1]))
