"""Truncated SVD of a sparse matrix, deterministic, and the vectors the count-based models publish.

    truncated_svd(A, k, solver, n_iter, seed) -> (U (m, k), s (k,), Vt (k, n)), s descending
    weighted(U, s, p) = U · diag(s^p)    (Levy, Goldberg & Dagan 2015: eigenvalue weighting p)

Determinism: both solvers start from a random matrix/vector drawn from `seed`, and signs are fixed
as scikit-learn's `svd_flip` does (each column of U has its largest-magnitude entry positive), so
the same matrix and seed give the same vectors (bit-identical with the same BLAS thread count).

Memory, for A with nnz stored entries in CSR float32 and m rows (words): the matrix, 8·nnz + 4·m
bytes, plus the solver's dense blocks: randomized ≈ 3 blocks of (max(m, n), k + 10) float32
(range finder Q, its product with A, and the small SVD's factors); arpack ≈ (2k + 1) Lanczos
vectors of max(m, n) float64. For V = 73 k words and k = 100: ~0.1 GB besides the matrix.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds
from sklearn.utils.extmath import randomized_svd, svd_flip

SOLVERS = ("randomized", "arpack")


def truncated_svd(matrix: sp.spmatrix | sp.sparray, k: int, *, solver: str = "randomized", n_iter: int = 7,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k largest singular triplets of `matrix` (m, n): U (m, k), s (k,) descending, Vt (k, n)."""
    m, n = matrix.shape
    if not 1 <= k < min(m, n):
        raise ValueError(f"truncated SVD: dimension {k} must be at least 1 and below min(rows, columns) = "
                         f"{min(m, n)} of the {m}×{n} matrix; lower model.dim or use a larger corpus / vocabulary")
    if solver == "randomized":
        u, s, vt = randomized_svd(matrix, k, n_oversamples=10, n_iter=n_iter, random_state=seed, flip_sign=False)
    elif solver == "arpack":
        start = np.random.default_rng(seed).standard_normal(min(m, n))  # ARPACK's otherwise random start
        u, s, vt = svds(matrix.astype(np.float64), k=k, solver="arpack", v0=start)
        order = np.argsort(-s, kind="stable")
        u, s, vt = u[:, order], s[order], vt[order]
    else:
        raise ValueError(f"truncated SVD: unknown solver {solver!r}; choose one of {SOLVERS} (model.solver)")
    u, vt = svd_flip(u, vt, u_based_decision=True)
    return u, s, vt


def weighted(singular_vectors: np.ndarray, s: np.ndarray, p: float) -> np.ndarray:
    """(rows, k) float32: singular vectors (as rows, e.g. U or Vt.T) scaled by s^p column-wise."""
    return np.ascontiguousarray(singular_vectors * (s ** p)[None, :], dtype=np.float32)
