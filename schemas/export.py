"""Exports of a word table to the formats other tools load: word2vec text and binary, plain Parquet.

word2vec (Mikolov's C tool; gensim `KeyedVectors.load_word2vec_format`):
    text:    "V dim\\n", then per token "token v1 v2 ... vdim\\n" (shortest decimal that reads back
             as the same float32, so a round trip is exact)
    binary:  "V dim\\n", then per token b"token " + dim little-endian float32 + b"\\n"
Tokens must contain no whitespace (the formats split on it); an export refuses such a table.

Both are built with whole-column Arrow/numpy operations (no per-token Python loop) and written
through firth.schemas.fs.open_atomic, so a local path or s3:// URI never shows a half-written file.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from firth.schemas.fs import open_atomic
from firth.schemas.tables import embedding_schema, write_parquet


def check_tokens(tokens: pa.Array, what: str) -> None:
    bad = pc.match_substring_regex(tokens, r"\s|^$")
    if pc.any(bad).as_py():
        examples = tokens.filter(bad).to_pylist()[:5]
        raise ValueError(f"{what}: {pc.sum(bad).as_py()} tokens are empty or contain whitespace ({examples!r}); "
                         "the word2vec formats cannot hold them - export to Parquet instead")


def word2vec_text(tokens: Sequence[str], vectors: np.ndarray) -> bytes:
    """(V,) tokens and (V, dim) float32 vectors -> the word2vec text format."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (V, dim)
    count, dim = vectors.shape
    token_array = pa.array(tokens, pa.string())
    check_tokens(token_array, "word2vec text export")
    # float32 -> string is Arrow's shortest round-trip form (e.g. 0.1 -> "0.1", not "0.10000000149")
    values = pc.cast(pa.array(vectors.reshape(-1)), pa.large_string())  # (V * dim,)
    rows = pa.LargeListArray.from_arrays(pa.array(np.arange(count + 1, dtype=np.int64) * dim), values)  # (V,)
    space, newline = pa.scalar(" ", pa.large_string()), pa.scalar("\n", pa.large_string())
    lines = pc.binary_join_element_wise(token_array.cast(pa.large_string()), pc.binary_join(rows, space), space)
    file = pa.LargeListArray.from_arrays(pa.array([0, count], pa.int64()), lines)  # one list of the (V,) lines
    joined = pc.binary_join(file, newline)  # (1,) large_string: the whole body
    _, offsets, data = joined.buffers()
    start, end = np.frombuffer(offsets, dtype=np.int64)[joined.offset: joined.offset + 2]
    return b"".join([f"{count} {dim}\n".encode(), memoryview(data)[start:end], b"\n"])  # one copy, no str


def word2vec_binary(tokens: Sequence[str], vectors: np.ndarray) -> bytes:
    """(V,) tokens and (V, dim) float32 vectors -> the word2vec binary format (little-endian float32)."""
    vectors = np.ascontiguousarray(vectors, dtype="<f4")  # (V, dim)
    count, dim = vectors.shape
    token_array = pa.array(tokens, pa.string())
    check_tokens(token_array, "word2vec binary export")
    _, offset_buffer, data_buffer = token_array.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int32)[token_array.offset: token_array.offset + count + 1]
    token_bytes = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0]: offsets[-1]]  # all tokens' UTF-8
    lengths = np.diff(offsets).astype(np.int64)  # (V,) UTF-8 bytes per token
    record = lengths + 1 + 4 * dim + 1  # token, space, vector, newline
    starts = np.concatenate([[0], np.cumsum(record)[:-1]])  # (V,) where each record begins
    header = f"{count} {dim}\n".encode()
    out = np.empty(len(header) + int(record.sum()), dtype=np.uint8)
    out[: len(header)] = np.frombuffer(header, dtype=np.uint8)
    starts += len(header)
    # token bytes: byte k of token i goes to starts[i] + k
    within = np.arange(len(token_bytes), dtype=np.int64) - np.repeat(offsets[:-1] - offsets[0], lengths)
    out[np.repeat(starts, lengths) + within] = token_bytes
    out[starts + lengths] = ord(" ")
    vector_at = (starts + lengths + 1)[:, None] + np.arange(4 * dim)  # (V, 4 * dim)
    out[vector_at] = vectors.view(np.uint8).reshape(count, 4 * dim)
    out[starts + record - 1] = ord("\n")
    return out.tobytes()


def write_bytes(uri: str, body: bytes, storage_options: Mapping[str, Any] | None = None) -> None:
    with open_atomic(uri, storage_options) as f:
        f.write(body)


def word_table(tokens: Sequence[str] | pa.Array | pa.ChunkedArray, vectors: np.ndarray,
               ids: np.ndarray | pa.Array | pa.ChunkedArray, counts: np.ndarray | pa.Array | pa.ChunkedArray) -> pa.Table:
    """A table in embedding_schema(dim): token, id, count, vector; row i is tokens[i] and vectors[i].
    The one builder of word tables: the job publishes a vocabulary's columns with it, the consumer exports."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (V, dim)
    dim = vectors.shape[1]
    return pa.table({"token": pa.array(tokens, pa.string()), "id": pa.array(ids, pa.int32()),
                     "count": pa.array(counts, pa.int64()),
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)},
                    schema=embedding_schema(dim))


def write_table_parquet(table: pa.Table, uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """One plain Parquet file in the table's published schema (vector as fixed_size_list<float>[dim])."""
    write_parquet(table, uri, table.schema, storage_options)
