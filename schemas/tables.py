"""Stage contracts: one pyarrow schema per table that crosses a stage boundary, checked on write
and on read.

`check` is strict by default: column types must match exactly (a list's child field name, which
Parquet writers rename between "item" and "element", is ignored). `cast=True` additionally
accepts a column whose values convert without loss (pyarrow safe cast, e.g. int64 -> int32 when
every value fits), for producers that build numpy arrays of a wider type. Columns may come in
any order; the returned table has the schema's order and exact types.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from firth.schemas.fs import filesystem, open_atomic

_NAME_KEY = b"firth.table"  # schema metadata: the table's name, used in error messages


class SchemaError(ValueError):
    """A table that does not match its stage contract; names the table and the field."""

    def __init__(self, table: str, field: str | None, problem: str):
        self.table, self.field, self.problem = table, field, problem
        where = f"table {table!r}" + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {problem}")


def _schema(name: str, *fields: pa.Field) -> pa.Schema:
    return pa.schema(fields, metadata={_NAME_KEY: name.encode()})


def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


VOCABULARY = _schema(
    "vocabulary",
    _required("token", pa.string()),
    _required("id", pa.int32()),  # dense 0..V-1, by descending count
    _required("count", pa.int64()),  # occurrences in the corpus
    _required("doc_count", pa.int64()),  # documents containing the token
)
TOKENS = _schema(
    "tokens",
    _required("doc_id", pa.string()),
    _required("token_ids", pa.list_(_required("item", pa.int32()))),  # vocabulary ids, in document order
)
COOCCURRENCE = _schema(
    "cooccurrence",
    _required("i", pa.int32()),
    _required("j", pa.int32()),
    _required("x", pa.float32()),  # weighted co-occurrence count X_ij
)
# One shard's share of one co-occurrence bucket, between EncodeShards and MergeCooccurrence:
# integer weight units (x = units / scale, see pipelines/statistics/kernels/cooccur.py) so that merging
# is exact and the result does not depend on how shards were grouped.
COOCCURRENCE_PARTIAL = _schema(
    "cooccurrence_partial",
    _required("i", pa.int32()),
    _required("j", pa.int32()),
    _required("units", pa.int64()),
)
# Positive PMI of the co-occurrence table, written by the ppmi_svd model (workers/count/ppmi.py) as
# <statistics>/ppmi/part-BBBBB.parquet, one per co-occurrence part; only entries > 0, sorted by (i, j).
PPMI = _schema(
    "ppmi",
    _required("i", pa.int32()),
    _required("j", pa.int32()),
    _required("ppmi", pa.float32()),
)
TFIDF = _schema(
    "tfidf",
    _required("doc_id", pa.string()),
    _required("term_id", pa.int32()),
    _required("tf", pa.int32()),
    _required("tfidf", pa.float32()),
)
IDF = _schema(
    "idf",
    _required("term_id", pa.int32()),
    _required("doc_count", pa.int64()),
    _required("idf", pa.float32()),
)


def embedding_schema(dim: int) -> pa.Schema:
    """A word table: one row per token, its vector a fixed_size_list<float32>[dim].

    Delta Lake has no fixed-size list type, so the store writes `vector` as list<float32> and
    converts back (checking every length) on read.
    """
    return _schema(
        "embeddings",
        _required("token", pa.string()),
        _required("id", pa.int32()),
        _required("count", pa.int64()),
        _vector(dim),
    )


def document_embedding_schema(dim: int) -> pa.Schema:
    """A document table (encoders): one row per document, or per chunk of one.

    `chunk` is 0 for a whole document (or its first chunk); `text` is the embedded span, kept so
    that search results can show it (null when the publisher leaves it out).
    """
    return _schema(
        "document_embeddings",
        _required("doc_id", pa.string()),
        _required("chunk", pa.int32()),
        pa.field("text", pa.string()),
        _vector(dim),
    )


# The columns that identify a row in each kind of published table; each combination is unique.
EMBEDDING_KEYS = {"embeddings": ("token", "id"), "document_embeddings": ("doc_id", "chunk")}


def published_schema(names: list[str], dim: int) -> pa.Schema:
    """The published schema a table with these column names is meant to have: a document table
    when it has `doc_id`, else a word table."""
    return document_embedding_schema(dim) if "doc_id" in names else embedding_schema(dim)


def _vector(dim: int) -> pa.Field:
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"embedding dim must be a positive integer, got {dim!r}")
    return _required("vector", pa.list_(_required("item", pa.float32()), dim))  # (dim,) per row


def table_name(schema: pa.Schema) -> str:
    return (schema.metadata or {}).get(_NAME_KEY, b"table").decode()


def check(table: pa.Table | pa.RecordBatch, schema: pa.Schema, name: str | None = None, *,
          cast: bool = False) -> pa.Table:
    """Return `table` with exactly `schema` (column order, types, nullability), or raise SchemaError.

    Raises for a missing field, an extra field, a wrong type (unless `cast` and the values convert
    losslessly), and nulls in a non-nullable field or list element.
    """
    name = name or table_name(schema)
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if not isinstance(table, pa.Table):
        raise TypeError(f"table {name!r}: expected a pyarrow.Table, got {type(table).__name__}")
    expected_names = schema.names
    missing = [f for f in expected_names if f not in table.column_names]
    if missing:
        raise SchemaError(name, missing[0], f"missing field; expected fields {expected_names}, "
                                            f"got {table.column_names}")
    extra = [f for f in table.column_names if f not in expected_names]
    if extra:
        raise SchemaError(name, extra[0], f"unexpected field; expected only {expected_names} "
                                          "(drop it before writing, or update the schema in schemas/tables.py)")
    if len(set(table.column_names)) != len(table.column_names):
        dup = next(f for f in table.column_names if table.column_names.count(f) > 1)
        raise SchemaError(name, dup, "field appears more than once")

    columns = []
    for field in schema:
        column = table.column(field.name)
        if not _same_type(column.type, field.type):
            if not cast:
                raise SchemaError(name, field.name, f"type {column.type}, expected {field.type} "
                                                    "(convert it before writing, e.g. np.asarray(..., dtype))")
            try:
                column = column.cast(_loose(field.type), safe=True)  # nulls are reported below
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise SchemaError(name, field.name, f"type {column.type} does not convert losslessly to "
                                                    f"{field.type}: {e}") from None
        _check_nulls(name, field.name, field, column)
        columns.append(column.cast(field.type))  # same values; renames list children, sets nullability
    return pa.Table.from_arrays(columns, schema=schema)


def _same_type(actual: pa.DataType, expected: pa.DataType) -> bool:
    return _loose(actual) == _loose(expected)


def _loose(type_: pa.DataType) -> pa.DataType:
    """`type_` with nullability dropped from list children (pyarrow already ignores their names)."""
    if pa.types.is_fixed_size_list(type_):
        return pa.list_(_loose(type_.value_type), type_.list_size)
    if pa.types.is_list(type_):
        return pa.list_(_loose(type_.value_type))
    return type_


def _check_nulls(name: str, path: str, field: pa.Field, column: pa.ChunkedArray | pa.Array) -> None:
    if not field.nullable and column.null_count:
        raise SchemaError(name, path, f"{column.null_count} null values in a field that allows none")
    if pa.types.is_list(field.type) or pa.types.is_fixed_size_list(field.type):
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        # flatten() honours slicing and skips null lists' slots: (total elements,)
        values = pa.chunked_array([c.flatten() for c in chunks], type=column.type.value_type)
        _check_nulls(name, f"{path}[]", field.type.value_field, values)


def write_parquet(table: pa.Table, uri: str, schema: pa.Schema,
                  storage_options: Mapping[str, Any] | None = None, *, cast: bool = False) -> None:
    """Check `table` against `schema`, then write one Parquet file atomically (see fs.open_atomic)."""
    table = check(table, schema, f"{table_name(schema)} at {uri}", cast=cast)
    with open_atomic(uri, storage_options) as f:
        pq.write_table(table, f, compression="zstd")


def read_parquet(uri: str, schema: pa.Schema, storage_options: Mapping[str, Any] | None = None) -> pa.Table:
    """Read one Parquet file and check it against `schema`."""
    fs, path = filesystem(uri, storage_options)
    try:
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri}: no such file (expected a {table_name(schema)} Parquet file; "
                                "was the stage that writes it run?)") from None
    return check(table, schema, f"{table_name(schema)} at {uri}")
