"""Term frequencies and TF-IDF, as scikit-learn's TfidfVectorizer with its defaults.

    tf(t, d)    = occurrences of term t in document d (raw count)
    idf(t)      = ln((1 + n_docs) / (1 + df(t))) + 1          (smooth_idf=True)
    tfidf(t, d) = tf(t, d) · idf(t) / sqrt(Σ_t' (tf(t', d) · idf(t'))²)   (norm="l2")

df(t) is the vocabulary's doc_count (documents of the whole corpus containing t) and n_docs the
corpus's document count. Out-of-vocabulary tokens (id -1) are dropped: they are in no row and in
no norm. Computed in float64, returned as float32.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from firth.pipelines.statistics.kernels.documents import checked_offsets


def term_frequencies(ids: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(doc_index int64, term_id int32, tf int32), one row per (document, in-vocabulary term),
    sorted by (doc_index, term_id); doc_index is the document's position in the batch."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"term_frequencies: ids must be a 1-d integer array, got {ids.dtype} {ids.shape}")
    offsets = checked_offsets(offsets, len(ids), "term_frequencies")
    return _term_frequencies(ids.astype(np.int32, copy=False), offsets)


def idf(doc_counts: np.ndarray, n_docs: int) -> np.ndarray:
    """(n_terms,) float32: ln((1 + n_docs) / (1 + doc_counts)) + 1."""
    doc_counts = np.asarray(doc_counts, np.float64)
    if n_docs < 0 or (len(doc_counts) and (doc_counts.min() < 0 or doc_counts.max() > n_docs)):
        raise ValueError(f"idf: doc_counts must lie in [0, n_docs={n_docs}], "
                         f"got [{doc_counts.min()}, {doc_counts.max()}]; "
                         "pass the merged vocabulary's doc_count and the corpus's total document count")
    return (np.log((1.0 + n_docs) / (1.0 + doc_counts)) + 1.0).astype(np.float32)


def tfidf(doc_index: np.ndarray, term_id: np.ndarray, tf: np.ndarray, idf: np.ndarray) -> np.ndarray:
    """(n_rows,) float32: tf · idf[term_id], L2-normalised over each document's rows."""
    doc_index = np.asarray(doc_index, np.int64)
    term_id = np.asarray(term_id, np.int64)
    if len(term_id) and (term_id.min() < 0 or term_id.max() >= len(idf)):
        raise ValueError(f"tfidf: term ids must be in [0, len(idf)={len(idf)}), "
                         f"got [{term_id.min()}, {term_id.max()}]; "
                         "the idf must come from the same vocabulary as the ids")
    if len(doc_index) and doc_index.min() < 0:
        raise ValueError("tfidf: doc_index must be ≥ 0")
    weight = np.asarray(tf, np.float64) * np.asarray(idf, np.float64)[term_id]  # (n_rows,)
    norm = np.sqrt(np.bincount(doc_index, weights=weight * weight))  # (max doc + 1,)
    return (weight / norm[doc_index]).astype(np.float32)


@njit(cache=True)
def _term_frequencies(ids, offsets):
    n_docs = len(offsets) - 1
    doc_index = np.empty(len(ids), np.int64)
    term_id = np.empty(len(ids), np.int32)
    tf = np.empty(len(ids), np.int32)
    n = 0
    for d in range(n_docs):
        terms = np.sort(ids[offsets[d]:offsets[d + 1]])  # (doc length,), -1 first
        first = n  # this document's first row
        for t in terms:
            if t < 0:
                continue
            if n > first and term_id[n - 1] == t:
                tf[n - 1] += 1
            else:
                doc_index[n], term_id[n], tf[n] = d, t, 1
                n += 1
    return doc_index[:n].copy(), term_id[:n].copy(), tf[:n].copy()
