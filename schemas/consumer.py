"""The light consumer API: load a published embedding table and query it, without the training
stack (no Dask, Beam, Ray or torch is imported here or by anything this imports).

    emb = open_embeddings("s3://bucket/store", "wiki-glove@3", storage_options)
    emb.vector("king")                 # (dim,) float32
    emb.neighbors("king", k=5)         # [("queen", 0.78), ...] cosine, the query word excluded
"""
from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from schemas import subwords
from schemas.fs import filesystem
from schemas.store import TableStore, parse_ref


class Embeddings:
    """Tokens and their vectors, row i of `vectors` belonging to `tokens[i]`."""

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
        return cls(table.column("token").to_pylist(), vectors, name=name, version=version, metadata=metadata)

    @property
    def ref(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._token_to_row

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
        """(len(tokens), dim) float32; KeyError listing every absent token."""
        rows = [self._token_to_row.get(t, -1) for t in tokens]
        missing = [t for t, r in zip(tokens, rows) if r < 0]
        if missing:
            raise KeyError(f"{len(missing)} tokens are not in table {self.ref}: {missing[:10]}")
        return self.vectors[np.asarray(rows, dtype=np.int64)]

    @property
    def unit_vectors(self) -> np.ndarray:
        """(V, dim) rows scaled to length 1 (zero rows stay zero), computed once."""
        if self._unit is None:
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)  # (V, 1)
            self._unit = self.vectors / np.where(norms > 0, norms, 1.0).astype(np.float32)
        return self._unit

    def neighbors(self, token_or_vector: str | np.ndarray, k: int = 10) -> list[tuple[str, float]]:
        """The k tokens of highest cosine similarity, best first; a token query excludes itself.

        Ties are broken by row order (rows are sorted by id, i.e. by frequency), so results are
        deterministic.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        unit = self.unit_vectors
        if isinstance(token_or_vector, str) and token_or_vector not in self and self.oov is not None:
            token_or_vector = self.vector(token_or_vector)  # out of vocabulary: its subword vector
        if isinstance(token_or_vector, str):
            row = self.index(token_or_vector)
            scores = unit @ unit[row]  # (V,) cosine to every token
            scores[row] = -np.inf
            available = len(self) - 1
        else:
            query = np.asarray(token_or_vector, dtype=np.float32).reshape(-1)  # (dim,)
            if query.shape != (self.dim,):
                raise ValueError(f"query vector has {query.size} values; table {self.ref} has dim {self.dim}")
            norm = np.linalg.norm(query)
            if not np.isfinite(norm) or norm == 0:
                raise ValueError("query vector is zero or not finite; cosine similarity is undefined")
            scores = unit @ (query / norm)  # (V,)
            available = len(self)
        k = min(k, available)
        if k == 0:
            return []
        kth = -np.partition(-scores, k - 1)[k - 1]  # the k-th best score
        top = np.flatnonzero(scores >= kth)  # every row at least that good, ties included
        top = top[np.lexsort((top, -scores[top]))][:k]  # best first; equal scores by row
        return [(self.tokens[i], float(scores[i])) for i in top]


def open_embeddings(store_uri: str, ref: str, storage_options: Mapping[str, str] | None = None) -> Embeddings:
    """Load `ref` ('name' for the latest version, 'name@3' for version 3) from the store at `store_uri`.

    `storage_options` are deltalake/object_store-style (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).
    """
    name, version = parse_ref(ref)
    store = TableStore(store_uri, storage_options)
    info = store.info(name, version)  # pins the version, so metadata and data agree
    table = store.read(name, info.version)
    embeddings = Embeddings.from_table(table, name=name, version=info.version, metadata=info.metadata)
    if "subwords" in info.metadata:
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
