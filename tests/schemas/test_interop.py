"""Downstream readers: a published version read with Polars (Delta), DuckDB (the version's Parquet
files or the Parquet export) and pandas gives the same tokens and float32 vectors."""
from __future__ import annotations

import numpy as np
import pytest

from firth.schemas.consumer import open_embeddings
from tests.helpers.tables import vectors_of, word_table


@pytest.fixture
def two_versions(local_store):
    first, second = word_table(20, 4, seed=1), word_table(30, 4, seed=2)
    local_store.publish("t", first)
    local_store.publish("t", second)
    return local_store, first


def test_polars_reads_a_version_through_delta(two_versions):
    import polars as pl

    store, first = two_versions
    frame = pl.read_delta(store.table_uri("t"), version=0).sort("id")
    assert frame["token"].to_list() == first["token"].to_pylist()
    assert np.stack(frame["vector"].to_list()).astype(np.float32).tobytes() == vectors_of(first).tobytes()


@pytest.mark.slow
def test_polars_reads_a_version_on_s3(s3_store):
    import polars as pl

    first = word_table(10, 3, seed=1)
    s3_store.publish("t", first)
    s3_store.publish("t", word_table(12, 3, seed=2))
    frame = pl.read_delta(s3_store.table_uri("t"), version=0, storage_options=s3_store.storage_options).sort("id")
    assert frame["token"].to_list() == first["token"].to_pylist()
    assert np.stack(frame["vector"].to_list()).astype(np.float32).tobytes() == vectors_of(first).tobytes()


def test_duckdb_reads_a_versions_files_and_the_parquet_export(two_versions, tmp_path):
    import duckdb

    store, first = two_versions
    files = store.files("t", 0)
    rows = duckdb.sql(f"SELECT token, vector FROM read_parquet({files!r}) ORDER BY id").fetchall()
    assert [r[0] for r in rows] == first["token"].to_pylist()
    assert np.array([r[1] for r in rows], np.float32).tobytes() == vectors_of(first).tobytes()

    export = open_embeddings(store.uri, "t@0").to_parquet(str(tmp_path / "t0.parquet"))
    (count, dim), = duckdb.sql(f"SELECT count(*), max(len(vector)) FROM '{export}'").fetchall()
    assert (count, dim) == (20, 4)


def test_pandas_reads_the_parquet_export_and_the_delta_version(two_versions, tmp_path):
    import pandas as pd
    from deltalake import DeltaTable

    store, first = two_versions
    export = open_embeddings(store.uri, "t@0").to_parquet(str(tmp_path / "t0.parquet"))
    frame = pd.read_parquet(export)
    assert frame["token"].tolist() == first["token"].to_pylist()
    assert np.stack(frame["vector"]).astype(np.float32).tobytes() == vectors_of(first).tobytes()
    delta = DeltaTable(store.table_uri("t"), version=0).to_pandas().sort_values("id")
    assert delta["token"].tolist() == first["token"].to_pylist()
