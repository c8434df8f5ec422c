"""Small word tables for the table-store tests (the stores themselves are fixtures in tests/conftest.py)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from firth.schemas.store import TableStore

STORES = ["local_store", "s3_store"]  # parametrize a test over both with request.getfixturevalue


def word_table(n: int, dim: int, seed: int) -> pa.Table:
    """n tokens w0..w{n-1}, ids 0..n-1, standard-normal float32 vectors."""
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)  # (n, dim)
    return pa.table({
        "token": [f"w{i}" for i in range(n)],
        "id": pa.array(range(n), pa.int32()),
        "count": pa.array(np.arange(n, 0, -1) * 10, pa.int64()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
    })


def vectors_of(table: pa.Table) -> np.ndarray:
    column = table.column("vector").combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size)  # (rows, dim)


def publish_with_metrics(store: TableStore, name: str, *wordsim: float) -> list[int]:
    """One version per value, metrics {"wordsim353_spearman": value}, vectors seeded by the version."""
    return [store.publish(name, word_table(6, 3, seed=i), {"metrics": {"wordsim353_spearman": w}})
            for i, w in enumerate(wordsim)]


def publish_with_subwords(store: TableStore, name: str, table: pa.Table, words: list[str], *,
                          min_n: int = 3, max_n: int = 4, buckets: int = 1000, seed: int = 0) -> int:
    """Publish `table` as a fastText table would be: an n-gram bucket table (artifact subwords.npz)
    holding every bucket of `words`' n-grams, with random vectors, so that those words, absent from
    the table, get vectors from their n-grams (schemas/subwords.py)."""
    import io

    from firth.schemas.subwords import HASH, word_buckets

    bucket_ids = np.unique(word_buckets(words, min_n, max_n, buckets)[1])  # (K,) sorted
    dim = table.column("vector").type.list_size
    vectors = np.random.default_rng(seed).standard_normal((len(bucket_ids), dim)).astype(np.float32)
    body = io.BytesIO()
    np.savez(body, bucket_ids=bucket_ids, vectors=vectors)
    spec = {"min_n": min_n, "max_n": max_n, "buckets": buckets, "hash": HASH, "artifact": "subwords.npz",
            "oov": "mean"}
    return store.publish(name, table, {"model": "fasttext", "subwords": spec}, {"subwords.npz": body.getvalue()})
