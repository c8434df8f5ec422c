"""How a published table is checked and laid out in Delta: content rules (unique keys, finite
vectors), streamed batch checking, the vector column's list<float32> (Delta has no fixed-size
list) <-> fixed_size_list<float32>[dim] conversion on the way in and out, and the check every
reader makes that a stored version is exactly one publish. Used by schemas/store.py.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from firth.schemas.errors import CorruptVersionError, StoreError
from firth.schemas.tables import EMBEDDING_KEYS, SchemaError, check, embedding_schema, published_schema, table_name


class CheckedBatches:
    """Streams batches in Delta's layout, checking each one (`checked`: the caller already did)."""

    def __init__(self, reader: pa.RecordBatchReader, name: str, dim: int, checked: bool):
        self.source, self.name, self.dim, self.checked = reader, name, dim, checked
        self.rows = 0
        self.schema = published_schema(reader.schema.names, dim)
        self.delta_schema = delta_schema(self.schema)

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.delta_schema, self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        keys = []  # key columns of every batch, for the uniqueness check across batches
        for batch in self.source:
            table = pa.Table.from_batches([batch])
            if not self.checked:
                table = validate_embeddings(check(table, self.schema, self.name), self.name)
                keys.append(table.select(EMBEDDING_KEYS[table_name(self.schema)]))
            self.rows += table.num_rows
            yield from table.cast(self.delta_schema).to_batches()
        if not self.checked and keys:  # known only at the end of the stream, still before the commit
            check_keys(self.name, pa.concat_tables(keys))
        if self.rows == 0:
            raise StoreError(f"publish {self.name!r}: the reader yielded no rows; nothing to publish")


def dim_of(schema: pa.Schema, name: str) -> int:
    if "vector" not in schema.names:
        raise SchemaError(name, "vector", f"missing field; expected fields {embedding_schema(1).names}")
    type_ = schema.field("vector").type
    if not pa.types.is_fixed_size_list(type_):
        raise SchemaError(name, "vector", f"type {type_}, expected fixed_size_list<float>[dim] "
                                          "(build it with firth.schemas.tables.embedding_schema(dim))")
    return type_.list_size


def validate_embeddings(table: pa.Table, name: str) -> pa.Table:
    """Content rules beyond types: unique keys (tokens and ids; document and chunk), finite vectors."""
    keys = EMBEDDING_KEYS[table_name(table.schema)]
    check_keys(name, table.select(keys))
    for chunk in table.column("vector").chunks:
        values = chunk.flatten().to_numpy()  # (rows * dim,) float32, zero-copy
        if not np.isfinite(values).all():
            rows = np.flatnonzero(~np.isfinite(values.reshape(len(chunk), -1)).all(axis=1))
            bad = pc.take(table.column(keys[0]), pa.array(rows[:5])).to_pylist()
            raise SchemaError(name, "vector", f"{len(rows)} rows have NaN or infinite values (tokens {bad}...); "
                                              "the training diverged - lower the learning rate")
    return table


def check_keys(name: str, keys: pa.Table) -> None:
    """Word tables: tokens unique and ids unique. Document tables: (doc_id, chunk) pairs unique."""
    if keys.column_names == ["doc_id", "chunk"]:
        pairs = keys.group_by(["doc_id", "chunk"]).aggregate([([], "count_all")])
        if pairs.num_rows != keys.num_rows:
            dup = pairs.filter(pc.greater(pairs["count_all"], 1)).select(["doc_id", "chunk"]).to_pylist()
            raise SchemaError(name, "doc_id", f"duplicate (doc_id, chunk) rows {dup[:5]} ({len(dup)} in all); "
                                              "each must appear once")
        return
    for field_name in keys.column_names:
        check_unique(name, field_name, keys.column(field_name))


def key_columns(names: list[str]) -> list[str]:
    """The key columns of a stored table with these columns: (doc_id, chunk) or (token, id)."""
    return list(EMBEDDING_KEYS["document_embeddings" if "doc_id" in names else "embeddings"])


def verify_version(what: str, keys: pa.Table, recorded_rows: int | None) -> None:
    """Refuse a stored version that is not exactly one publish: its row count must be the one its
    commit recorded, and its keys (`keys`: the key columns of every row) unique."""
    problems = []
    if recorded_rows is None:
        problems.append("its commit records no row count (it was not committed by firth's publish)")
    elif keys.num_rows != recorded_rows:
        problems.append(f"it holds {keys.num_rows} rows but its commit recorded {recorded_rows}")
    try:
        check_keys(what, keys)
    except SchemaError as e:
        problems.append(f"field {e.field!r}: {e.problem}")
    if problems:
        raise CorruptVersionError(f"{what}: {'; '.join(problems)}. It is not exactly one publish, so it is not "
                                  "read: read another version (`firth tables versions NAME`) or publish again")


def check_unique(name: str, field_name: str, column: pa.ChunkedArray) -> None:
    if pc.count_distinct(column).as_py() != len(column):
        counts = pc.value_counts(column)
        dup = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1)).to_pylist()
        raise SchemaError(name, field_name, f"duplicate values {dup[:5]} ({len(dup)} in all); each must appear once")


def delta_schema(schema: pa.Schema) -> pa.Schema:
    """The schema as stored in Delta: vector as list<float32> (Delta has no fixed-size list)."""
    vector = schema.field("vector")
    return schema.set(schema.get_field_index("vector"),
                      vector.with_type(pa.list_(vector.type.value_field))).remove_metadata()


def from_delta(data: pa.Table, ref: str) -> pa.Table:
    """Delta's list<float32> vectors back to fixed_size_list<float32>[dim], checked; rows sorted by id."""
    if "vector" not in data.column_names:
        raise SchemaError(ref, "vector", f"missing field; the stored table has {data.column_names}")
    vectors = data.column("vector")
    if vectors.null_count:
        raise SchemaError(ref, "vector", f"{vectors.null_count} null vectors")
    if not pa.types.is_list(vectors.type):
        raise SchemaError(ref, "vector", f"stored type {vectors.type}, expected list<float>")
    lengths = pc.list_value_length(vectors).to_numpy()  # (rows,)
    if len(lengths) == 0:
        raise SchemaError(ref, "vector", "the stored table has no rows")
    dim = int(lengths[0])
    if dim < 1 or (lengths != dim).any():
        bad = int(np.flatnonzero(lengths != dim)[0]) if dim >= 1 else 0
        raise SchemaError(ref, "vector", f"row {bad} has {lengths[bad]} values, row 0 has {dim}; "
                                         "all vectors must have the same length")
    fixed_type = pa.list_(pa.field("item", vectors.type.value_type), dim)  # check() sets nullability
    fixed = pa.chunked_array([pa.FixedSizeListArray.from_arrays(c.flatten(), type=fixed_type) for c in vectors.chunks],
                             fixed_type)
    data = data.set_column(data.column_names.index("vector"), "vector", fixed)
    table = check(data, published_schema(data.column_names, dim), ref)
    # Delta returns files in no promised order: words by id, documents by (doc_id, chunk)
    if "id" in table.column_names:
        ids = table.column("id").to_numpy()
        if len(ids) > 1 and (ids[1:] < ids[:-1]).any():
            table = table.take(pa.array(np.argsort(ids, kind="stable")))
        return table
    return table.sort_by([("doc_id", "ascending"), ("chunk", "ascending")])
