"""GloVe model math (Pennington et al. 2014, as in Stanford's glove.c): kernels only, no engine.

    J = sum_ij f(x_ij) (w_i . w~_j + b_i + b~_j - log x_ij)^2,   f(x) = min(1, (x / x_max)^alpha)

One parameter layout serves every kernel, the sync and the checkpoint: a float32 `state` of
shape (2, 2V, D+1) where `state[0]` holds the parameters and `state[1]` the AdaGrad sums.
Rows 0..V-1 are the word vectors w_i, rows V..2V-1 the context vectors w~_j; column D is the
bias (b_i or b~_j). This is glove.c's `W` and `gradsq` side by side, so one all-reduce moves
both and one file checkpoints both. Published vectors are w + w~ (glove.c `-model 2`).

Two kernels, chosen by device, for the same model, update and defaults:
- `sgd_numba` (here): glove.c's inner loop, one entry at a time, in place (CPU, per thread).
- `glove_segment` (workers/glove/kernel_cuda.py): the same per-entry update on a CUDA device, one
  warp an entry, a whole epoch segment per launch (Hogwild across warps, as glove.c's threads).

AdaGrad as glove.c does it: the accumulated quantity is (eta * g)^2, a step divides by
sqrt(1 + sum) (so the first step is the learning rate), and the per-entry loop steps with the
sum *before* adding the current gradient. glove.c keeps gradsq = 1 + sum in double precision;
we keep the float32 `sum` without the 1, so that squared steps far below float32's resolution
at 1.0 (1.2e-7; common with x_max 100) still accumulate. On the benchmark corpus this changed
nothing measurable (WordSim-353 rho 0.3043 -> 0.3042), but it keeps the sums faithful.
"""
from __future__ import annotations

import numpy as np
from numba import njit


def init_state(vocab_size: int, dim: int, seed: int) -> np.ndarray:
    """Fresh (2, 2V, D+1) float32 state: parameters uniform in (-0.5, 0.5) / dim, AdaGrad sums 0.

    Biases included, as glove.c does (it divides by D+1, its vector size counting the bias).
    """
    rng = np.random.default_rng(seed)
    state = np.empty((2, 2 * vocab_size, dim + 1), dtype=np.float32)
    state[0] = (rng.random((2 * vocab_size, dim + 1), dtype=np.float32) - np.float32(0.5)) / np.float32(dim)
    state[1] = 0.0
    return state


def published_vectors(params: np.ndarray, vocab_size: int) -> np.ndarray:
    """w + w~ without biases, (V, D) float32, from a (2V, D+1) parameter array."""
    return np.ascontiguousarray(params[:vocab_size, :-1] + params[vocab_size:, :-1], dtype=np.float32)


def weight(x: np.ndarray, x_max: float, alpha: float) -> np.ndarray:
    """The weighting function f(x) = min(1, (x / x_max)^alpha), elementwise."""
    return np.minimum(1.0, (np.asarray(x, dtype=np.float64) / x_max) ** alpha)


def loss_sum(params: np.ndarray, vocab_size: int, i: np.ndarray, j: np.ndarray, x: np.ndarray,
             x_max: float, alpha: float) -> float:
    """sum of 0.5 f(x) diff^2 over the given entries, without updating (for tests and evaluation)."""
    w, c = params[i].astype(np.float64), params[vocab_size + j].astype(np.float64)  # (n, D+1)
    diff = (w[:, :-1] * c[:, :-1]).sum(1) + w[:, -1] + c[:, -1] - np.log(x)
    return float((0.5 * weight(x, x_max, alpha) * diff * diff).sum())


@njit(cache=True, nogil=True, fastmath=True)
def sgd_numba(params, gradsq, i, j, x, vocab_size, x_max, alpha, eta):  # pragma: no cover (compiled)
    """One pass of per-entry AdaGrad SGD over the entries in the given order; returns the sum of
    0.5 f diff^2 seen before each update (glove.c's cost). Updates params, gradsq in place.

    params, gradsq: (2V, D+1) float32; i, j: (n,) int32; x: (n,) float32. nogil: a caller may run
    several chunks on threads over one shared state, as glove.c's threads do (Hogwild).
    """
    dim = params.shape[1] - 1
    eta32 = np.float32(eta)
    one = np.float32(1.0)
    cost = 0.0
    for n in range(i.shape[0]):
        l1 = i[n]
        l2 = j[n] + vocab_size
        xv = np.float64(x[n])
        dot = np.float32(0.0)
        for b in range(dim):
            dot += params[l1, b] * params[l2, b]
        diff = np.float64(dot) + params[l1, dim] + params[l2, dim] - np.log(xv)
        fdiff = diff if xv > x_max else (xv / x_max) ** alpha * diff
        cost += 0.5 * fdiff * diff
        step = np.float32(fdiff) * eta32  # eta * f * diff, the common factor of every gradient
        for b in range(dim):
            t1 = step * params[l2, b]  # eta * dJ/dw_b
            t2 = step * params[l1, b]  # eta * dJ/dw~_b
            params[l1, b] -= t1 / np.sqrt(one + gradsq[l1, b])
            params[l2, b] -= t2 / np.sqrt(one + gradsq[l2, b])
            gradsq[l1, b] += t1 * t1
            gradsq[l2, b] += t2 * t2
        params[l1, dim] -= step / np.sqrt(one + gradsq[l1, dim])
        params[l2, dim] -= step / np.sqrt(one + gradsq[l2, dim])
        gradsq[l1, dim] += step * step
        gradsq[l2, dim] += step * step
    return cost
