"""The random draws both word2vec kernels share: kernel_numba.py calls these functions, kernel_cuda.py
compiles the same Python functions for the device (`device_function`), so that subsampling, the
dynamic window and the noise distribution are one piece of code and one seed gives both kernels
the same draws.

word2vec.c's 64-bit LCG, x = x * 25214903917 + 11; every draw takes the state and returns the next
one (compiled code keeps it in a local; the callers keep it in a (1,) array between calls).

- subsampling: a word w is dropped when keep_prob[w] < 1 and keep_prob[w] is below a uniform
  draw in [0, 1) (16 bits of the state);
- dynamic window: a draw b in [0, window) (the top 32 bits, multiply-shift, no division) reduces
  the window to window - b, as word2vec.c does;
- noise word: Walker's alias table (workers/word2vec/model.py `alias_table`): the top 32 bits pick
  a column k (multiply-shift), bits 8..31 a coin; k if the coin is below prob[k], else alias[k].

numba caches a compiled kernel by its own file: after editing this one, clear the kernels'
__pycache__ (or touch them) so that they are compiled again with it.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_LCG_A, _LCG_C = np.uint64(25214903917), np.uint64(11)


@njit(cache=True, inline="always")
def next_random(r):  # pragma: no cover (compiled)
    return r * _LCG_A + _LCG_C


@njit(cache=True, inline="always")
def subsample(ids, start, stop, keep_prob, kept, r):  # pragma: no cover (compiled)
    """The words of ids[start:stop] (one document) that the subsampling draw keeps, in order, into
    kept[:n]; returns (n, r)."""
    n = 0
    for t in range(start, stop):
        w = ids[t]
        r = next_random(r)
        if keep_prob[w] < 1.0 and keep_prob[w] < np.float32((r >> np.uint64(16)) & np.uint64(0xFFFF)) / np.float32(65536.0):
            continue
        kept[n] = w
        n += 1
    return n, r


@njit(cache=True, inline="always")
def window_span(pos, n, window, r):  # pragma: no cover (compiled)
    """The kept positions [lo, hi) of position pos's dynamic window (pos included) among n kept
    words, the window reduced by the draw to 1..window on each side; returns (lo, hi, r)."""
    r = next_random(r)
    reduced = window - np.int64(((r >> np.uint64(32)) * np.uint64(window)) >> np.uint64(32))
    lo, hi = pos - reduced, pos + reduced + 1
    # conditionals, not max/min: numba 0.68's CUDA target failed to type those builtins when the GPU
    # kernel was compiled for sm_90 (test_the_kernel_compiles_for_an_h100_without_spilling)
    return (lo if lo > 0 else 0), (hi if hi < n else n), r  # noqa: FURB136


@njit(cache=True, inline="always")
def noise_draw(alias_prob, alias_idx, r):  # pragma: no cover (compiled)
    """One draw from the noise distribution (count^0.75, the alias table); returns (word, r)."""
    r = next_random(r)
    k = np.int64(((r >> np.uint64(32)) * np.uint64(alias_prob.shape[0])) >> np.uint64(32))
    u = np.float32((r >> np.uint64(8)) & np.uint64(0xFFFFFF)) / np.float32(16777216.0)
    return (k if u < alias_prob[k] else np.int64(alias_idx[k])), r
