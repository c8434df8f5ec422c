"""Small GloVe inputs the kernel tests share (CPU kernel in test_glove.py, CUDA kernel in test_glove_cuda.py)."""
from __future__ import annotations

import numpy as np

# one entry (i=0, j=1, x=4) on two_word_state() with x_max = 10, alpha = 0.75, eta = 0.05:
# diff = w.w~ + b + b~ - log 4 = -1.48629436; f = 0.4^0.75; glove.c's cost 0.5 f diff^2
ONE_ENTRY = {"i": 0, "j": 1, "x": 4.0, "vocab_size": 2, "x_max": 10.0, "alpha": 0.75, "eta": 0.05}
ONE_ENTRY_COST = 0.5555519266556235


def two_word_state() -> np.ndarray:
    """V = 2, D = 2: w_0 = (0.1, -0.2), b_0 = 0.05; w~_1 = (0.3, 0.4), b~_1 = -0.1; AdaGrad sums 0 but row 0."""
    state = np.zeros((2, 4, 3), dtype=np.float32)
    state[0, 0] = [0.1, -0.2, 0.05]
    state[0, 3] = [0.3, 0.4, -0.1]  # context rows start at V = 2
    state[1] = 0.0
    state[1, 0] = [0.0, 3.0, 1.0]  # earlier squared steps on row 0: steps divide by sqrt(1 + sum) = 1, 2, sqrt(2)
    return state


def tiny_matrix(vocab_size: int, seed: int) -> tuple[np.ndarray, ...]:
    """A symmetric (i, j, x) matrix with every pair present, x in [1, 20]."""
    rng = np.random.default_rng(seed)
    upper = rng.integers(1, 21, (vocab_size, vocab_size)).astype(np.float32)
    dense = np.triu(upper) + np.triu(upper, 1).T
    i, j = np.nonzero(dense)
    return i.astype(np.int32), j.astype(np.int32), dense[i, j]
