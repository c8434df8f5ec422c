"""The light consumer API: load a published embedding table and query it, without the training
stack (no Dask, Beam, Ray or torch is imported here or by anything this imports).

    emb = open_embeddings("s3://bucket/store", "wiki-glove@production", storage_options)
    emb.vector("king")                 # (dim,) float32
    emb.vectors_for(["king", "queen"]) # (2, dim) float32
    emb.neighbors("king", k=5)         # [("queen", 0.78), ...] cosine, the query word excluded
    emb["king"], emb[["king", "queen"]], "king" in emb      # gensim's KeyedVectors habits:
    emb.most_similar(positive=["king", "woman"], negative=["man"], topn=5)   # 3CosAdd analogy
    emb.most_similar_cosmul(positive=["king", "woman"], negative=["man"])   # 3CosMul
    emb.similarity("king", "queen"); emb.to_keyed_vectors()                 # gensim KeyedVectors
    emb.to_word2vec("wiki.bin", binary=True); emb.to_parquet("wiki.parquet")

    docs = open_documents("s3://bucket/store", "wiki-minilm@3")
    docs.search(query_vector, k=5)     # [Hit(doc_id, chunk, text, score), ...] cosine, best first

A reference is NAME, NAME@VERSION, NAME@ALIAS or NAME@TIMESTAMP (schemas/refs.py).
"""
from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from firth.schemas import export, subwords
from firth.schemas.fs import filesystem
from firth.schemas.store import StoreError, TableStore, VersionInfo


class VectorTable:
    """Rows of float32 vectors with cosine top-k; the base of Embeddings (words) and Documents."""

    vectors: np.ndarray  # (rows, dim) float32
    name: str
    version: int | None
    _unit: np.ndarray | None = None

    @property
    def ref(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def unit_vectors(self) -> np.ndarray:
        """(rows, dim) rows scaled to length 1 (zero rows stay zero), computed once."""
        if self._unit is None:
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)  # (rows, 1)
            self._unit = self.vectors / np.where(norms > 0, norms, 1.0).astype(np.float32)
        return self._unit

    def _top_k(self, query: np.ndarray, k: int, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the k rows of highest cosine to `query`, best first; ties by row order."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        query = np.asarray(query, dtype=np.float32).reshape(-1)  # (dim,)
        if query.shape != (self.dim,):
            raise ValueError(f"query vector has {query.size} values; table {self.ref} has dim {self.dim}")
        norm = np.linalg.norm(query)
        if not np.isfinite(norm) or norm == 0:
            raise ValueError("query vector is zero or not finite; cosine similarity is undefined")
        scores = self.unit_vectors @ (query / norm)  # (rows,) cosine to every row
        if exclude is not None:
            scores[exclude] = -np.inf
        return top_k(scores, min(k, len(self) - (exclude is not None)))


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores) of the k highest of `scores` (rows,), best first; equal scores in row order,
    so that results are deterministic. The one top-k of word neighbours and document search
    (firth.workers.encoder.search scores the same way, with the query embedded first)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, scores.dtype)
    kth = -np.partition(-scores, k - 1)[k - 1]  # the k-th best score
    top = np.flatnonzero(scores >= kth)  # every row at least that good, ties included
    top = top[np.lexsort((top, -scores[top]))][:k]  # best first; equal scores by row
    return top, scores[top]


class Embeddings(VectorTable):
    """Tokens and their vectors, row i of `vectors` belonging to `tokens[i]`."""

    ids: np.ndarray | None = None  # (V,) int32 published ids, when loaded from a table
    counts: np.ndarray | None = None  # (V,) int64 corpus counts, when loaded from a table

    def __init__(self, tokens: Sequence[str], vectors: np.ndarray, *, name: str = "embeddings",
                 version: int | None = None, metadata: Mapping[str, Any] | None = None):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (V, dim)
        if vectors.ndim != 2 or vectors.shape[0] != len(tokens):
            raise ValueError(f"{name}: vectors have shape {vectors.shape}, expected ({len(tokens)}, dim) "
                             "- one row per token")
        self.tokens = list(tokens)
        self.vectors = vectors
        self.name, self.version, self.metadata = name, version, dict(metadata or {})
        self._token_to_row = {token: row for row, token in enumerate(self.tokens)}
        if len(self._token_to_row) != len(self.tokens):
            raise ValueError(f"{name}: tokens are not unique; each token must have one row")
        self._unit: np.ndarray | None = None  # (V, dim) rows scaled to length 1, built on first query
        # token -> (dim,) vector or None, for tokens not in the table (fastText: from subwords)
        self.oov: Callable[[str], np.ndarray | None] | None = None

    @classmethod
    def from_table(cls, table: pa.Table, *, name: str = "embeddings", version: int | None = None,
                   metadata: Mapping[str, Any] | None = None) -> "Embeddings":
        """From a table in embedding_schema(dim) (token, id, count, vector)."""
        vector = table.column("vector").combine_chunks()
        dim = vector.type.list_size
        vectors = vector.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)  # (V, dim)
        embeddings = cls(table.column("token").to_pylist(), vectors, name=name, version=version, metadata=metadata)
        embeddings.ids = table.column("id").to_numpy()
        embeddings.counts = table.column("count").to_numpy()
        return embeddings

    def __contains__(self, token: str) -> bool:
        """In the table (a fastText table still gives other words a vector: see `is_oov`)."""
        return token in self._token_to_row

    def __getitem__(self, tokens: str | Sequence[str]) -> np.ndarray:
        """gensim's `kv["word"]` (dim,) and `kv[["a", "b"]]` (n, dim), float32."""
        return self.vector(tokens) if isinstance(tokens, str) else self.vectors_for(tokens)

    def is_oov(self, token: str) -> bool:
        """True when `token` is not in the table but has a vector built from its character n-grams (fastText)."""
        return token not in self._token_to_row and self.oov is not None and self.oov(token) is not None

    def __repr__(self) -> str:
        return f"Embeddings({self.ref!r}, {len(self)} tokens, dim={self.dim})"

    def index(self, token: str) -> int:
        try:
            return self._token_to_row[token]
        except KeyError:
            raise KeyError(f"token {token!r} is not in table {self.ref} ({len(self)} tokens; words below the "
                           "training min_count or beyond max_vocab_size are left out)") from None

    def vector(self, token: str) -> np.ndarray:
        """(dim,) float32 vector of `token`; KeyError naming the token and the table when absent
        (a table with subwords gives out-of-vocabulary tokens the mean of their n-gram vectors)."""
        if token not in self._token_to_row and self.oov is not None:
            vector = self.oov(token)
            if vector is not None:
                return vector
        return self.vectors[self.index(token)]

    def vectors_for(self, tokens: Sequence[str]) -> np.ndarray:
        """(len(tokens), dim) float32; KeyError listing every absent token (fastText tables: those
        without an n-gram vector either)."""
        rows = np.asarray([self._token_to_row.get(t, -1) for t in tokens], dtype=np.int64).reshape(-1)
        result = self.vectors[rows]  # (n, dim); rows of absent tokens are filled below or refused
        absent = np.flatnonzero(rows < 0)
        built = {int(i): self.oov(tokens[i]) for i in absent} if self.oov is not None else {}
        missing = [tokens[i] for i in absent if built.get(int(i)) is None]
        if missing:
            raise KeyError(f"{len(missing)} tokens are not in table {self.ref}: {missing[:10]}")
        for i, vector in built.items():
            result[i] = vector
        return result

    def neighbors(self, token_or_vector: str | np.ndarray, k: int = 10) -> list[tuple[str, float]]:
        """The k tokens of highest cosine similarity, best first; a token query excludes itself.

        Ties are broken by row order (rows are sorted by id, i.e. by frequency), so results are
        deterministic.
        """
        if isinstance(token_or_vector, str) and token_or_vector not in self and self.oov is not None:
            token_or_vector = self.vector(token_or_vector)  # out of vocabulary: its subword vector
        if isinstance(token_or_vector, str):
            row = self.index(token_or_vector)
            top, scores = self._top_k(self.vectors[row], k, exclude=row)
        else:
            top, scores = self._top_k(token_or_vector, k)
        return [(self.tokens[i], float(s)) for i, s in zip(top, scores)]

    def similarity(self, a: str, b: str) -> float:
        """Cosine of the vectors of two tokens (gensim's `similarity`)."""
        u, v = self.vector(a), self.vector(b)
        return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))

    def most_similar(self, positive: str | np.ndarray | Sequence[str | np.ndarray] = (),
                     negative: str | np.ndarray | Sequence[str | np.ndarray] = (), topn: int | None = 10,
                     *, method: str = "3cosadd") -> list[tuple[str, float]] | np.ndarray:
        """gensim's `most_similar`: the `topn` tokens closest to `positive` minus `negative` (tokens
        or vectors), best first, the input tokens left out; `topn=None` gives every row's score.

        `method="3cosadd"` (default, gensim's most_similar): cosine to the unit-length mean of the
        inputs, tokens' vectors scaled to length 1 first, negatives weighted -1. `"3cosmul"`
        (gensim's most_similar_cosmul, Levy & Goldberg 2014): product of the positives' cosines over
        the negatives', each cosine shifted to [0, 1]. Both as gensim 4.4 computes them (compared in
        tests/schemas/test_consumer_gensim.py). Out-of-vocabulary tokens of fastText tables take
        their n-gram vector and, as in gensim, are not left out of the results.
        """
        positive, negative = _as_list(positive), _as_list(negative)
        if not positive and not negative or method == "3cosmul" and not positive:
            raise ValueError("most_similar needs at least one positive token or vector (e.g. "
                             "positive=['king', 'woman'], negative=['man'])")
        terms = np.stack([self._unit_vector(t) if isinstance(t, str) else np.asarray(t, np.float32).reshape(-1)
                          for t in positive + negative])  # (terms, dim): tokens at unit length
        if terms.shape[1] != self.dim:
            raise ValueError(f"a query vector has {terms.shape[1]} values; table {self.ref} has dim {self.dim}")
        if method == "3cosadd":
            weights = np.r_[np.ones(len(positive)), -np.ones(len(negative))].astype(np.float32)  # (terms,)
            mean = weights @ terms / len(weights)  # (dim,)
            norm = np.linalg.norm(mean)
            scores = self.unit_vectors @ (mean / norm if norm > 0 else mean)  # (rows,)
        elif method == "3cosmul":
            shifted = (1 + self.unit_vectors @ terms.T) / 2  # (rows, terms) cosines in [0, 1]
            scores = shifted[:, :len(positive)].prod(axis=1) / (shifted[:, len(positive):].prod(axis=1) + 1e-6)
        else:
            raise ValueError(f"method must be '3cosadd' or '3cosmul', got {method!r}")
        if topn is None:
            return scores
        inputs = [self._token_to_row[t] for t in positive + negative if isinstance(t, str) and t in self]
        scores[inputs] = -np.inf
        top, best = top_k(scores, min(topn, len(self) - len(set(inputs))))
        return [(self.tokens[i], float(s)) for i, s in zip(top, best)]

    def most_similar_cosmul(self, positive=(), negative=(), topn: int | None = 10):
        """gensim's `most_similar_cosmul`: `most_similar(..., method="3cosmul")`."""
        return self.most_similar(positive, negative, topn, method="3cosmul")

    def to_keyed_vectors(self):
        """A gensim `KeyedVectors` holding these tokens and vectors in this order, with each token's
        corpus `count` (`kv.get_vecattr(token, "count")`) when loaded from a table."""
        try:
            from gensim.models import KeyedVectors
        except ImportError:
            raise ImportError("Embeddings.to_keyed_vectors() needs gensim, which is not installed: "
                              "pip install gensim") from None
        keyed = KeyedVectors(self.dim, count=len(self), dtype=np.float32)
        keyed.vectors[:] = self.vectors
        keyed.index_to_key = list(self.tokens)
        keyed.key_to_index = dict(self._token_to_row)
        if self.counts is not None:
            keyed.allocate_vecattrs(["count"], [np.int64])
            keyed.expandos["count"][:] = self.counts
        return keyed

    def _unit_vector(self, token: str) -> np.ndarray:
        """(dim,) the token's vector at length 1 (an out-of-vocabulary fastText token's n-gram vector too)."""
        if token in self._token_to_row:
            return self.unit_vectors[self._token_to_row[token]]
        vector = self.vector(token)
        norm = np.linalg.norm(vector)
        return vector / norm if norm > 0 else vector

    def to_table(self) -> pa.Table:
        """The table in embedding_schema(dim); ids and counts as loaded (row numbers and 0 otherwise)."""
        ids = self.ids if self.ids is not None else np.arange(len(self), dtype=np.int32)
        counts = self.counts if self.counts is not None else np.zeros(len(self), dtype=np.int64)
        return export.word_table(self.tokens, self.vectors, ids, counts)

    def to_word2vec(self, uri: str, *, binary: bool = False, storage_options: Mapping[str, Any] | None = None) -> str:
        """Write the word2vec text (or binary) format to a local path or URI; return it. gensim loads it
        with KeyedVectors.load_word2vec_format(uri, binary=binary), vectors bit-identical."""
        body = (export.word2vec_binary if binary else export.word2vec_text)(self.tokens, self.vectors)
        export.write_bytes(uri, body, storage_options)
        return uri

    def to_parquet(self, uri: str, *, storage_options: Mapping[str, Any] | None = None) -> str:
        """Write one plain Parquet file (token, id, count, vector); return its URI."""
        export.write_table_parquet(self.to_table(), uri, storage_options)
        return uri


def _as_list(terms) -> list:
    """gensim accepts one token or vector, or None, where a list is expected."""
    return [] if terms is None else [terms] if isinstance(terms, (str, np.ndarray)) else list(terms)


class Hit(NamedTuple):
    """One search result: chunk `chunk` of document `doc_id`, its text, its cosine to the query.
    Documents.search and firth.workers.encoder.search (text queries) both answer with these."""
    doc_id: str
    chunk: int
    text: str | None
    score: float  # cosine


class Documents(VectorTable):
    """A document table: row i is chunk `chunks[i]` of document `doc_ids[i]`, with its `texts[i]`."""

    def __init__(self, doc_ids: Sequence[str], chunks: Sequence[int], texts: Sequence[str | None],
                 vectors: np.ndarray, *, name: str = "documents", version: int | None = None,
                 metadata: Mapping[str, Any] | None = None):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (rows, dim)
        if vectors.ndim != 2 or not vectors.shape[0] == len(doc_ids) == len(chunks) == len(texts):
            raise ValueError(f"{name}: vectors have shape {vectors.shape}; expected one row per (doc_id, chunk), "
                             f"{len(doc_ids)} of them")
        self.doc_ids, self.texts = list(doc_ids), list(texts)
        self.chunks = np.asarray(chunks, dtype=np.int32)  # (rows,)
        self.vectors = vectors
        self.name, self.version, self.metadata = name, version, dict(metadata or {})
        self._row = {(d, int(c)): row for row, (d, c) in enumerate(zip(self.doc_ids, self.chunks.tolist()))}

    @classmethod
    def from_table(cls, table: pa.Table, *, name: str = "documents", version: int | None = None,
                   metadata: Mapping[str, Any] | None = None) -> "Documents":
        """From a table in document_embedding_schema(dim) (doc_id, chunk, text, vector)."""
        vector = table.column("vector").combine_chunks()
        vectors = vector.flatten().to_numpy(zero_copy_only=False).reshape(-1, vector.type.list_size)  # (rows, dim)
        return cls(table.column("doc_id").to_pylist(), table.column("chunk").to_numpy(),
                   table.column("text").to_pylist(), vectors, name=name, version=version, metadata=metadata)

    def __repr__(self) -> str:
        return f"Documents({self.ref!r}, {len(self)} rows, dim={self.dim})"

    def vector(self, doc_id: str, chunk: int = 0) -> np.ndarray:
        """(dim,) float32 vector of one chunk of a document."""
        try:
            return self.vectors[self._row[(doc_id, int(chunk))]]
        except KeyError:
            raise KeyError(f"document {doc_id!r} chunk {chunk} is not in table {self.ref} ({len(self)} rows)") from None

    def search(self, query_vector: np.ndarray, k: int = 10) -> list[Hit]:
        """The k rows of highest cosine similarity to `query_vector` (dim,), best first."""
        top, scores = self._top_k(query_vector, k)
        return [Hit(self.doc_ids[i], int(self.chunks[i]), self.texts[i], float(s)) for i, s in zip(top, scores)]

    def to_table(self) -> pa.Table:
        from firth.schemas.tables import document_embedding_schema

        return pa.table({"doc_id": self.doc_ids, "chunk": pa.array(self.chunks, pa.int32()), "text": self.texts,
                         "vector": pa.FixedSizeListArray.from_arrays(pa.array(self.vectors.reshape(-1)), self.dim)},
                        schema=document_embedding_schema(self.dim))

    def to_parquet(self, uri: str, *, storage_options: Mapping[str, Any] | None = None) -> str:
        export.write_table_parquet(self.to_table(), uri, storage_options)
        return uri


def open_embeddings(store_uri: str, ref: str, storage_options: Mapping[str, str] | None = None) -> Embeddings:
    """Load a word table: `ref` is 'name' (latest), 'name@3', 'name@production' or 'name@2026-11-24T09:00Z'.

    `storage_options` are deltalake/object_store-style (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).
    """
    return _embeddings(*_load(store_uri, ref, storage_options, "embeddings"))


def open_documents(store_uri: str, ref: str, storage_options: Mapping[str, str] | None = None) -> Documents:
    """Load a document table (doc_id, chunk, text, vector); `ref` as for open_embeddings."""
    _, name, info, table = _load(store_uri, ref, storage_options, "documents")
    return Documents.from_table(table, name=name, version=info.version, metadata=info.metadata)


def open_table(store_uri: str, ref: str, storage_options: Mapping[str, str] | None = None) -> Embeddings | Documents:
    """Embeddings for a word table, Documents for a document table."""
    store, name, info, table = _load(store_uri, ref, storage_options, None)
    if "doc_id" in table.column_names:
        return Documents.from_table(table, name=name, version=info.version, metadata=info.metadata)
    return _embeddings(store, name, info, table)


def _load(store_uri: str, ref: str, storage_options: Mapping[str, str] | None,
          kind: str | None) -> tuple[TableStore, str, VersionInfo, pa.Table]:
    """The store, the resolved name, the version's commit and its rows (a version's artifacts, such as
    a subword table, are then `store.fetch_artifact(name, info.version, ...)`)."""
    store = TableStore(store_uri, storage_options)
    name, version = store.resolve(ref)  # pins the version, so metadata and data agree
    info = store.info(name, version)
    table = store.read(name, version)
    is_documents = "doc_id" in table.column_names
    if kind == "embeddings" and is_documents:
        raise StoreError(f"{name}@{version} is a document table (doc_id, chunk, text, vector); "
                         "open it with open_documents() or open_table()")
    if kind == "documents" and not is_documents:
        raise StoreError(f"{name}@{version} is a word table (token, id, count, vector); "
                         "open it with open_embeddings() or open_table()")
    return store, name, info, table


def _embeddings(store: TableStore, name: str, info: VersionInfo, table: pa.Table) -> Embeddings:
    embeddings = Embeddings.from_table(table, name=name, version=info.version, metadata=info.metadata)
    if "subwords" in info.metadata:  # fastText: out-of-vocabulary words get their n-grams' vector
        embeddings.oov = _subword_vectors(store, name, info.version, info.metadata["subwords"])
    return embeddings


def _subword_vectors(store: TableStore, name: str, version: int, spec: Mapping[str, Any]):
    """The OOV rule of schemas/subwords.py over the version's published n-gram bucket table."""
    if spec.get("hash") != subwords.HASH:
        raise ValueError(f"{name}@{version}: subwords hashed with {spec.get('hash')!r}; this consumer knows "
                         f"{subwords.HASH!r}; upgrade firth")
    fs, path = filesystem(store.artifact_uri(name, version, spec["artifact"]), store.storage_options)
    with np.load(io.BytesIO(fs.cat_file(path)), allow_pickle=False) as published:
        bucket_ids, bucket_vectors = published["bucket_ids"], published["vectors"]  # (K,), (K, dim)
    return lambda token: subwords.oov_vector(token, bucket_ids, bucket_vectors, spec["min_n"], spec["max_n"],
                                             spec["buckets"])
