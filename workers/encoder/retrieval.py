"""Retrieval evaluation built from the corpus itself: a document's title is the query, its body the
answer (Python docs: section title -> section text; a dictionary: headword -> definition).

Queries and bodies come from held-out documents (see pairs.is_held_out), which training never sees.
Every query has exactly one relevant body, the one of its own document; the others are distractors.
"""
from __future__ import annotations

import re

import numpy as np

_UNDERLINE = re.compile(r"^[\s=\-.~*#_^\"'`+]*$")  # reStructuredText / info title underlines
_SECTION_NUMBER = re.compile(r"^\d+(?:\.\d+)*\.?\s+")  # "5.17.6.17 Legacy Shell ..." -> "Legacy Shell ..."
MAX_TITLE_CHARS, MIN_BODY_CHARS = 200, 40


def title_and_body(text: str) -> tuple[str, str] | None:
    """(title, body) of a document whose first line is its title, or None when it has no usable one.

    The title is the first non-empty line without a leading section number, cut before a "\\"
    (Webster's pronunciation markup: "Disaster \\Dis*as\"ter\\, n. ..." -> "Disaster"); the body is
    everything after that line, title underlines dropped.
    """
    lines = text.strip().split("\n")
    title = _SECTION_NUMBER.sub("", lines[0].split("\\", 1)[0]).strip()
    rest = lines[1:]
    while rest and _UNDERLINE.match(rest[0]):
        rest = rest[1:]
    body = "\n".join(rest).strip()
    if not 2 <= len(title) <= MAX_TITLE_CHARS or len(body) < MIN_BODY_CHARS:
        return None
    return title, body


def retrieval_metrics(query_vectors: np.ndarray, document_vectors: np.ndarray, k: int = 10,
                      block: int = 1024) -> dict[str, float]:
    """recall@k and MRR@k where query i's one relevant document is document i (cosine similarity).

    query_vectors, document_vectors: (n, dim). The rank of the relevant document counts the
    documents scoring strictly higher, so ties favour it (as a stable sort would put it first).
    """
    if query_vectors.shape != document_vectors.shape or len(query_vectors) == 0:
        raise ValueError(f"retrieval_metrics: need n queries and n documents of one dim, got {query_vectors.shape} "
                         f"and {document_vectors.shape}")
    for name, vectors in (("query", query_vectors), ("document", document_vectors)):
        if not np.isfinite(vectors).all():  # NaN scores compare false and would rank every document first
            raise ValueError(f"retrieval_metrics: {name} vectors hold NaN or infinite values (the encoder's "
                             "training diverged: lower model.learning_rate)")
    queries = _unit(query_vectors)
    documents = _unit(document_vectors)
    ranks = np.empty(len(queries), dtype=np.int64)  # (n,) 0 = the relevant document came first
    for start in range(0, len(queries), block):
        scores = queries[start:start + block] @ documents.T  # (b, n)
        relevant = scores[np.arange(len(scores)), np.arange(start, start + len(scores))]  # (b,)
        ranks[start:start + len(scores)] = (scores > relevant[:, None]).sum(axis=1)
    hit = ranks < k
    return {f"recall_at_{k}": float(hit.mean()), f"mrr_at_{k}": float(np.where(hit, 1.0 / (ranks + 1), 0.0).mean())}


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def evaluate_retrieval(encoder, title_body_pairs: list[tuple[str, str]], *, k: int = 10, batch_size: int = 64,
                       device: str = "cpu") -> dict[str, float]:
    """{"retrieval_recall_at_k", "retrieval_mrr_at_k"} of `encoder` (firth.workers.encoder.model.Encoder) on
    (title, body) pairs: each title must find its own body among all the bodies."""
    from firth.workers.encoder.inference import embed_texts  # torch: only when evaluating

    titles = embed_texts(encoder, [t for t, _ in title_body_pairs], batch_size=batch_size, device=device)
    bodies = embed_texts(encoder, [b for _, b in title_body_pairs], batch_size=batch_size, device=device)
    return {f"retrieval_{name}": value for name, value in retrieval_metrics(titles, bodies, k).items()}
