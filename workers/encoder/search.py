"""Semantic search over a published document table, with the table's own encoder.

    search = open_search("s3://bucket/store", "docs@production", storage_options)   # any ref of schemas/refs.py
    search.search("how do I parse command-line options?", k=5)   # [Hit(doc_id, chunk, text, score), ...]
    search.search(["parse options", "read a csv file"], k=5)     # one such list per query
    search.encode(["some text", "another"])                      # (2, dim) unit vectors, as the table's

The encoder is the version's "model" artifact, fetched once into a local cache (keyed by the
publish id, so a version's cache entry never goes stale). Scores are cosine similarities. A table
of chunk rows answers with documents: each document once, at its best chunk. The table, its hits
and exact top-k are the light consumer's (firth.schemas.consumer: Documents, Hit, top_k); this
module adds what needs the encoder (embedding the query) and the FAISS indexes.

Indexes: "exact" (default) scores every row (one matrix-vector product); "hnsw" and "ivf" are FAISS
approximate indexes for tables too large for that, whose recall against exact is measured in
tests/workers/test_encoder_search.py (figures in benchmarks/README.md). "auto": exact up to AUTO_EXACT_ROWS rows, else IVF.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from firth.schemas.consumer import Documents, Hit, top_k

AUTO_EXACT_ROWS = 200_000
CANDIDATES_PER_HIT = 4  # approximate indexes fetch k x this rows, so that chunks of one document do not crowd out k


class ExactIndex:
    """Every row scored: (q, dim) queries -> (scores, rows), each (q, min(k, n)), best first."""

    def __init__(self, unit_vectors: np.ndarray):
        self.vectors = unit_vectors  # (n, dim), rows of length 1

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        best = [top_k(scores, k) for scores in queries @ self.vectors.T]  # per query: (rows, scores) (k,)
        return np.array([s for _, s in best]), np.array([r for r, _ in best])


class FaissIndex:
    """Inner product on unit vectors (= cosine) with FAISS HNSW or IVF-flat."""

    def __init__(self, unit_vectors: np.ndarray, kind: str = "hnsw", *, hnsw_m: int = 32, ef_search: int = 128,
                 nlist: int | None = None, nprobe: int = 16, seed: int = 0):
        import faiss

        n, dim = unit_vectors.shape
        vectors = np.ascontiguousarray(unit_vectors, dtype=np.float32)
        if kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = max(2 * hnsw_m, 64)
            self.index.add(vectors)
            self.index.hnsw.efSearch = ef_search
        elif kind == "ivf":
            nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))  # FAISS wants >= 39 points per list
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.cp.seed = seed
            self.index.train(vectors)
            self.index.add(vectors)
            self.index.nprobe = min(nprobe, nlist)
        else:
            raise ValueError(f"index {kind!r}: use exact, hnsw, ivf or auto")

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)  # (q, k) each
        return scores, rows  # rows -1 where fewer than k were found


def build_index(unit_vectors: np.ndarray, kind: str = "exact"):
    if kind == "auto":
        kind = "exact" if len(unit_vectors) <= AUTO_EXACT_ROWS else "ivf"  # higher recall than HNSW in benchmarks/README.md
    return ExactIndex(unit_vectors) if kind == "exact" else FaissIndex(unit_vectors, kind)


class DocumentSearch:
    """A document table and the encoder that made it: text in, the k most similar documents out."""

    def __init__(self, table: pa.Table, encoder, *, ref: str = "documents", index: str = "exact",
                 device: str = "cpu"):
        documents = Documents.from_table(table, name=ref)
        self.unit = documents.unit_vectors  # (n, dim)
        if encoder.dim != documents.dim:
            raise ValueError(f"{ref}: vectors have dim {documents.dim} but its model gives {encoder.dim}; "
                             "the table and its model artifact do not belong together")
        self.doc_ids, self.chunks, self.texts = documents.doc_ids, documents.chunks, documents.texts
        self.doc_codes = table.column("doc_id").combine_chunks().dictionary_encode().indices.to_numpy()  # (n,)
        self.chunked = len(np.unique(self.doc_codes)) < len(self.doc_codes)
        self.encoder, self.ref, self.device = encoder, ref, device
        self.index_kind = index
        self.index = build_index(self.unit, index)

    def __len__(self) -> int:
        return len(self.doc_ids)

    def encode(self, texts: str | Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), dim) unit vectors, embedded `batch_size` texts at a time with the table's own
        encoder (cut at its max_length tokens, as the table's rows were); a str gives one (dim,)
        vector, as SentenceTransformer.encode does."""
        from firth.workers.encoder.inference import embed_texts

        _at_least_one(batch_size=batch_size)
        single = isinstance(texts, str)
        vectors = embed_texts(self.encoder, [texts] if single else list(texts), batch_size=batch_size,
                              device=self.device)  # (q, dim)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors[0] if single else vectors

    def search(self, query: str | Sequence[str], k: int = 10, *, batch_size: int = 64) -> list[Hit] | list[list[Hit]]:
        """The k documents most similar to `query`, best first (ties by row order): a list of Hit for a
        str, one such list per query for a list of queries (embedded and searched `batch_size` at a
        time, so memory stays at batch_size x rows scores whatever the number of queries)."""
        single = isinstance(query, str)
        queries = [query] if single else _query_list(query)
        for position, text in enumerate(queries):
            if not isinstance(text, str):
                raise TypeError(f"search: query {position + 1} of {len(queries)} is a {type(text).__name__}, not "
                                 "text; pass a str or a list of str")
            if not text.strip():
                which = "the query text" if single else f"query {position + 1} of {len(queries)}"
                raise ValueError(f"search: {which} is empty; give some words to search for")
        _at_least_one(k=k, batch_size=batch_size)
        results: list[list[Hit]] = []
        for start in range(0, len(queries), batch_size):
            results += self.search_vectors(self.encode(queries[start:start + batch_size], batch_size), k)
        return results[0] if single else results

    def search_vectors(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """(q, dim) unit query vectors -> q lists of up to k hits."""
        fetch = len(self) if self.chunked and isinstance(self.index, ExactIndex) else \
            min(len(self), k * (CANDIDATES_PER_HIT if self.chunked else 1))
        scores, rows = self.index.search(queries, fetch)
        results = []
        for row_scores, row_ids in zip(scores, rows):
            hits, seen = [], set()
            for score, row in zip(row_scores, row_ids):
                if row < 0 or self.doc_codes[row] in seen:
                    continue
                seen.add(self.doc_codes[row])
                hits.append(Hit(self.doc_ids[row], int(self.chunks[row]), self.texts[row], float(score)))
                if len(hits) == k:
                    break
            results.append(hits)
        return results


def model_cache_dir() -> Path:
    return Path(os.environ.get("FIRTH_CACHE") or Path.home() / ".cache" / "firth") / "models"


def open_search(store_uri: str, ref: str, storage_options: Mapping[str, str] | None = None, *,
                index: str = "exact", cache_dir: str | os.PathLike | None = None, device: str = "cpu") -> DocumentSearch:
    """Load document table `ref` and its encoder from the store at `store_uri`: `ref` is any table
    reference ('docs', 'docs@3', 'docs@production', 'docs@2026-11-28T10:00:00Z'; schemas/refs.py),
    resolved by the store as every reader does."""
    from firth.schemas.store import TableStore
    from firth.workers.encoder.model import load_encoder

    store = TableStore(store_uri, storage_options)
    name, version = store.resolve(ref)
    info = store.info(name, version)  # pins the version: table, model and metadata agree
    pinned = f"{name}@{info.version}"
    if "model" not in info.artifacts:
        raise ValueError(f"{pinned} has no 'model' artifact, so queries cannot be embedded; search works on "
                         f"document tables published by `model: encoder` (this one is a "
                         f"{info.metadata.get('model', 'unknown')} table)")
    table = store.read(name, info.version)
    if "doc_id" not in table.column_names:
        raise ValueError(f"{pinned} is a word table; use `firth neighbors` for it")
    store.artifact_uri(name, info.version, "model")  # refuses a path that is not the version's own artifact
    folder = Path(cache_dir or model_cache_dir()) / name / info.artifacts["model"].strip("/").replace("/", "-")
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".fetch-"))
        try:
            store.fetch_artifact(name, info.version, "model", scratch / "model")
            os.replace(scratch / "model", folder)  # atomic: a half-fetched model is never used
        except OSError:
            if not folder.is_dir():
                raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return DocumentSearch(table, load_encoder(folder).to(device), ref=pinned, index=index, device=device)


def _query_list(queries) -> list:
    """A list of queries from any sequence; anything else is refused with what to pass."""
    if not isinstance(queries, Sequence):
        raise TypeError(f"search: expected a query text or a list of them, got a {type(queries).__name__}")
    return list(queries)


def _at_least_one(**counts: int) -> None:
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
