"""Positive pointwise mutual information of a co-occurrence matrix (kernels only: numpy, no IO).

With X the (V, V) co-occurrence table (rows: words w, columns: contexts c), row sums X_w = Σ_c X_wc
and column sums X_c = Σ_w X_wc, context-distribution smoothing α (Levy, Goldberg & Dagan 2015,
"Improving distributional similarity with lessons learned from word embeddings", §3.2) and shift k:

    P(w, c) = X_wc / T      P(w) = X_w / T      P_α(c) = X_c^α / Z,   Z = Σ_c X_c^α
    PMI_α(w, c) = log P(w, c) / (P(w) P_α(c)) = log X_wc + log Z − log X_w − α log X_c
    PPMI(w, c)  = max(PMI_α(w, c) − log k, 0)

(T cancels.) α = 1 is plain PMI; α < 1 raises rare contexts' probability, which lowers their
PMI (PMI's bias towards rare contexts). Entries with X_wc = 0 have PMI −∞, so PPMI keeps the
sparsity of X: only the stored entries whose value is > 0. Computed in float64, stored float32.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp


def marginals(i: np.ndarray, j: np.ndarray, x: np.ndarray, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(row sums X_w, column sums X_c), each (vocab_size,) float64, of the entries (i, j, x).

    Additive over disjoint sets of entries (e.g. co-occurrence part files): sum the parts' results."""
    if len(i) and max(int(i.max()), int(j.max())) >= vocab_size:
        raise ValueError(f"co-occurrence ids reach {max(int(i.max()), int(j.max()))} but the vocabulary has "
                         f"{vocab_size} words: the co-occurrence table and vocabulary come from different runs; "
                         "recompute the statistics")
    weights = np.asarray(x, np.float64)
    return np.bincount(i, weights, minlength=vocab_size), np.bincount(j, weights, minlength=vocab_size)


def smoothed_contexts(column_sums: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """(α log X_c as (V,) float64, log Z): the smoothed context log-probability is the first minus the second."""
    if not 0 < alpha <= 1:
        raise ValueError(f"PPMI context smoothing exponent must be in (0, 1], got {alpha!r} (model.context_smoothing)")
    with np.errstate(divide="ignore"):
        log_context = alpha * np.log(column_sums)  # −inf for a context that never occurs (never looked up)
    return log_context, float(np.log(np.sum(np.asarray(column_sums, np.float64) ** alpha)))


def ppmi_entries(i: np.ndarray, j: np.ndarray, x: np.ndarray, row_sums: np.ndarray, column_sums: np.ndarray,
                 alpha: float = 0.75, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, ppmi) of the entries whose PPMI is > 0, in input order: (n,) int32, int32, float32.

    row_sums / column_sums are the marginals of the *whole* matrix (see `marginals`), so a part of
    the entries can be transformed on its own."""
    if shift < 1:
        raise ValueError(f"PPMI shift k must be ≥ 1 (PMI − log k), got {shift!r} (model.shift)")
    log_context, log_z = smoothed_contexts(column_sums, alpha)
    x = np.asarray(x, np.float64)
    positive = x > 0
    pmi = np.full(len(x), -np.inf)
    pmi[positive] = (np.log(x[positive]) + (log_z - math.log(shift))
                     - np.log(row_sums[i[positive]]) - log_context[j[positive]])  # (n,)
    keep = pmi > 0
    return (np.asarray(i[keep], np.int32), np.asarray(j[keep], np.int32), pmi[keep].astype(np.float32))


def ppmi_matrix(i: np.ndarray, j: np.ndarray, x: np.ndarray, vocab_size: int, alpha: float = 0.75,
                shift: float = 1.0) -> sp.csr_matrix:
    """The (V, V) float32 CSR PPMI matrix of co-occurrence entries held in memory (unique (i, j))."""
    row_sums, column_sums = marginals(i, j, x, vocab_size)
    return entries_to_csr(*ppmi_entries(i, j, x, row_sums, column_sums, alpha, shift), shape=(vocab_size, vocab_size))


def entries_to_csr(i: np.ndarray, j: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """CSR float32 from unique (i, j, value) entries; memory ≈ 8 bytes per entry + 4 per row."""
    return sp.csr_matrix((np.asarray(values, np.float32), (i, j)), shape=shape)
