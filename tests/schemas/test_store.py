"""TableStore over Delta Lake: publish/read round trips (local and S3), versions, atomic failure, refs."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from firth.schemas.store import NotFoundError, StoreError, TableStore, parse_ref
from firth.schemas.tables import SchemaError, check, embedding_schema
from tests.helpers.tables import vectors_of


def embeddings(tokens: list[str], vectors: np.ndarray, ids: list[int] | None = None) -> pa.Table:
    vectors = np.asarray(vectors, dtype=np.float32)  # (V, dim)
    n, dim = vectors.shape
    return pa.table({
        "token": tokens,
        "id": pa.array(range(n) if ids is None else ids, pa.int32()),
        "count": pa.array(np.arange(n, 0, -1) * 10, pa.int64()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
    })


def random_embeddings(n: int, dim: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return embeddings([f"w{i}" for i in range(n)], vectors), vectors


@pytest.mark.slow
@pytest.mark.parametrize("store_fixture", ["local_store", "s3_store"])
def test_publish_then_read_is_identical(store_fixture, request):
    store = request.getfixturevalue(store_fixture)
    table, vectors = random_embeddings(50, 8, seed=1)
    assert store.publish("wiki-glove", table, {"dim": 8}) == 0
    back = store.read("wiki-glove")
    assert back.equals(check(table, embedding_schema(8)))
    assert vectors_of(back).tobytes() == vectors.tobytes()  # bit-identical float32
    assert store.tables() == ["wiki-glove"]


@pytest.mark.slow
@pytest.mark.parametrize("store_fixture", ["local_store", "s3_store"])
def test_versions_increment_and_metadata_round_trips(store_fixture, request):
    store = request.getfixturevalue(store_fixture)
    first, first_vectors = random_embeddings(5, 3, seed=1)
    second, _ = random_embeddings(7, 4, seed=2)
    config = {"table": "t", "model": {"dim": 3, "x_max": 100.0}, "shards": ["a.txt", "b.txt"], "note": "é"}
    assert store.publish("t", first, config) == 0
    assert store.publish("t", second, {"run": 2}) == 1
    versions = store.versions("t")
    assert [(v.version, v.metadata, v.dim, v.rows) for v in versions] == [(0, config, 3, 5), (1, {"run": 2}, 4, 7)]
    assert versions[0].timestamp <= versions[1].timestamp <= datetime.now(timezone.utc)
    assert store.info("t") == versions[1]
    assert store.info("t", 0) == versions[0]
    assert vectors_of(store.read("t", 0)).tobytes() == first_vectors.tobytes()  # time travel
    assert store.read("t").num_rows == 7


def test_failed_publish_mid_stream_commits_nothing(local_store):
    table, _ = random_embeddings(4, 2, seed=0)
    assert local_store.publish("t", table, {"v": 0}) == 0
    schema = check(table, embedding_schema(2)).schema
    good, _ = random_embeddings(1000, 2, seed=1)

    def bad_second_batch():
        yield from check(good, embedding_schema(2)).to_batches()
        nan = np.full((1, 2), np.nan, np.float32)
        yield from check(embeddings(["nan-word"], nan, ids=[1000]), embedding_schema(2)).to_batches()

    with pytest.raises(SchemaError, match=r"table 't', field 'vector': 1 rows have NaN .*\['nan-word'\]"):
        local_store.publish("t", pa.RecordBatchReader.from_batches(schema, bad_second_batch()), {"v": 1})

    def reader_that_dies():
        yield from check(good, embedding_schema(2)).to_batches()
        raise ConnectionError("shard server went away")

    with pytest.raises(ConnectionError, match="shard server went away"):
        local_store.publish("t", pa.RecordBatchReader.from_batches(schema, reader_that_dies()), {"v": 2})
    assert [v.version for v in local_store.versions("t")] == [0]
    assert local_store.read("t").equals(check(table, embedding_schema(2)))


@pytest.mark.slow
def test_failed_publish_on_s3_commits_nothing(s3_store):
    table, _ = random_embeddings(4, 2, seed=0)
    s3_store.publish("t", table)
    schema = check(table, embedding_schema(2)).schema
    duplicate = check(random_embeddings(4, 2, seed=5)[0], embedding_schema(2))  # same tokens and ids again

    def batches():
        yield from check(table, embedding_schema(2)).to_batches()
        yield from duplicate.to_batches()

    with pytest.raises(SchemaError, match=r"field 'token': duplicate values \['w0', 'w1', 'w2', 'w3'\]"):
        s3_store.publish("t", pa.RecordBatchReader.from_batches(schema, batches()))
    assert [v.version for v in s3_store.versions("t")] == [0]
    with pytest.raises(NotFoundError, match=r"no table 'u' in store s3://.*/stores/main \(tables there: t\)"):
        s3_store.read("u")


def test_streamed_publish_of_several_batches(local_store):
    table, vectors = random_embeddings(30, 4, seed=3)
    checked = check(table, embedding_schema(4))
    reader = pa.RecordBatchReader.from_batches(checked.schema, checked.to_batches(max_chunksize=7))
    assert local_store.publish("streamed", reader, {"batches": 5}) == 0
    assert vectors_of(local_store.read("streamed")).tobytes() == vectors.tobytes()
    assert local_store.info("streamed").rows == 30


def test_publish_refuses_bad_tables(local_store):
    table, _ = random_embeddings(3, 2, seed=0)
    with pytest.raises(SchemaError, match=r"field 'vector': type list<item: float>, expected fixed_size_list"):
        local_store.publish("t", table.set_column(3, "vector", table.column("vector").cast(pa.list_(pa.float32()))))
    with pytest.raises(SchemaError, match=r"field 'id': duplicate values \[1\]"):
        local_store.publish("t", table.set_column(1, "id", pa.array([0, 1, 1], pa.int32())))
    inf = embeddings(["a", "b"], [[0.0, 1.0], [np.inf, 0.0]])
    with pytest.raises(SchemaError, match=r"1 rows have NaN or infinite values \(tokens \['b'\]"):
        local_store.publish("t", inf)
    with pytest.raises(StoreError, match="no rows"):
        local_store.publish("t", table.slice(0, 0))
    with pytest.raises(StoreError, match="metadata is not JSON-serialisable"):
        local_store.publish("t", table, {"when": datetime.now()})
    assert local_store.tables() == []


def test_read_returns_rows_by_id(local_store):
    table = embeddings(["c", "a", "b"], [[3, 3], [1, 1], [2, 2]], ids=[2, 0, 1])
    local_store.publish("t", table)
    back = local_store.read("t")
    assert back.column("token").to_pylist() == ["a", "b", "c"]
    assert vectors_of(back).tolist() == [[1, 1], [2, 2], [3, 3]]


@pytest.mark.parametrize("name", ["", "Wiki", "../x", "..", ".", "a/b", "a\\b", "/abs", "_x", "_aliases", "-x",
                                  "a" * 65, "a@1", "a b", "é", "a\n", "a.b"])
def test_bad_table_names_are_rejected(local_store, name):
    table, _ = random_embeddings(2, 2, seed=0)
    with pytest.raises(StoreError, match="bad table name"):
        local_store.publish(name, table)


def test_good_table_names_are_accepted(local_store):
    table, _ = random_embeddings(2, 2, seed=0)
    for name in ["a", "0", "wiki_glove-100", "a" * 64]:
        assert local_store.publish(name, table) == 0
    assert local_store.tables() == sorted(["a", "0", "wiki_glove-100", "a" * 64])


def test_parse_ref():
    assert parse_ref("wiki-glove") == ("wiki-glove", None)
    assert parse_ref("wiki-glove@3") == ("wiki-glove", 3)
    assert parse_ref("t@0") == ("t", 0)
    for bad in ["t@", "t@X", "t@-1", "t@1@2", "t@1.5", "@3"]:
        with pytest.raises(StoreError, match="bad table reference"):
            parse_ref(bad)
    with pytest.raises(StoreError, match="bad table reference 'Big@2': bad table name 'Big'"):
        parse_ref("Big@2")
    # aliases and times need a store to resolve against
    with pytest.raises(StoreError, match=r"'t@production' names an alias or a time; .*TableStore\(uri\).resolve"):
        parse_ref("t@production")


@pytest.mark.parametrize("name", ["tables", "latest"])
def test_reserved_table_names_are_rejected(local_store, name):
    with pytest.raises(StoreError, match=f"bad table name '{name}': reserved"):
        local_store.publish(name, random_embeddings(2, 2, seed=0)[0])


def test_parent_is_recorded_resolved_and_must_exist(local_store):
    table, _ = random_embeddings(3, 2, seed=0)
    local_store.publish("base", table)
    local_store.publish("base", table)
    local_store.publish("t", table)
    assert local_store.publish("t", table, parent=0) == 1
    assert local_store.publish("t", table, parent="base") == 2  # a ref: the latest version of another table
    assert [v.parent for v in local_store.versions("t")] == [None, "t@0", "base@1"]
    with pytest.raises(NotFoundError, match=r"publish 't': parent 7 does not exist: .*has no version 7"):
        local_store.publish("t", table, parent=7)
    assert [v.version for v in local_store.versions("t")] == [0, 1, 2]


def test_files_lists_exactly_one_versions_parquet_files(local_store):
    import pyarrow.parquet as pq

    first, first_vectors = random_embeddings(5, 3, seed=1)
    local_store.publish("t", first)
    local_store.publish("t", random_embeddings(6, 3, seed=2)[0])
    files = local_store.files("t", 0)
    assert len(files) == 1 and files[0].endswith(".parquet")
    data = pq.read_table(files[0])
    assert data.column("token").to_pylist() == [f"w{i}" for i in range(5)]
    assert data.schema.field("vector").type == pa.list_(pa.field("item", pa.float32(), nullable=False))  # Delta: list<float>
    assert local_store.files("t") != files


def test_missing_table_and_version_errors_list_what_exists(local_store):
    with pytest.raises(NotFoundError, match=r"no table 'x' in store .*store \(the store has no tables yet\)"):
        local_store.read("x")
    table, _ = random_embeddings(2, 2, seed=0)
    local_store.publish("a", table)
    local_store.publish("a", table)
    local_store.publish("b", table)
    with pytest.raises(NotFoundError, match=r"no table 'x' in store .*store \(tables there: a, b\)"):
        local_store.versions("x")
    with pytest.raises(NotFoundError, match=r"table 'a' in store .*store has no version 7; versions: 0\.\.1"):
        local_store.read("a", 7)
    with pytest.raises(NotFoundError, match=r"has no version 2; versions: 0$"):
        local_store.info("b", 2)


def test_store_refuses_fsspec_style_options(tmp_path):
    with pytest.raises(StoreError, match=r"deltalake/object_store-style .*\['key', 'secret'\]"):
        TableStore(str(tmp_path), {"key": "k", "secret": "s"})


def test_tables_ignores_folders_that_are_not_delta_tables(local_store, tmp_path):
    (tmp_path / "store" / "tables" / "not-a-table").mkdir(parents=True)
    (tmp_path / "store" / "tables" / "Bad Name").mkdir()
    assert local_store.tables() == []
    local_store.publish("real", random_embeddings(2, 2, seed=0)[0])
    assert local_store.tables() == ["real"]


def documents(doc_ids: list[str], chunks: list[int], vectors: np.ndarray) -> pa.Table:
    vectors = np.asarray(vectors, dtype=np.float32)  # (rows, dim)
    return pa.table({
        "doc_id": doc_ids, "chunk": pa.array(chunks, pa.int32()), "text": [f"text of {d}" for d in doc_ids],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
    })


def test_document_tables_round_trip_sorted_by_document_and_chunk(local_store):
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    local_store.publish("docs", documents(["b", "a", "b", "c"], [0, 0, 1, 0], vectors))
    back = local_store.read("docs")
    assert back.column_names == ["doc_id", "chunk", "text", "vector"]
    assert list(zip(back["doc_id"].to_pylist(), back["chunk"].to_pylist())) == [("a", 0), ("b", 0), ("b", 1), ("c", 0)]
    np.testing.assert_array_equal(vectors_of(back), vectors[[1, 0, 2, 3]])
    with pytest.raises(SchemaError, match=r"duplicate \(doc_id, chunk\) rows \[\{'doc_id': 'b', 'chunk': 0\}\]"):
        local_store.publish("docs", documents(["b", "a", "b"], [0, 0, 0], vectors[:3]))


@pytest.mark.slow
@pytest.mark.parametrize("store_fixture", ["local_store", "s3_store"])
def test_artifacts_are_published_with_their_version(store_fixture, request, tmp_path):
    store = request.getfixturevalue(store_fixture)
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"layers": 2}')
    (folder / "sub" / "weights.bin").write_bytes(b"\x00\x01\x02")
    table, _ = random_embeddings(3, 2, seed=0)
    store.publish("t", table, artifacts={"model": folder, "note.txt": b"first"})
    store.publish("t", table, artifacts={"note.txt": b"second"})

    assert sorted(store.info("t", 0).artifacts) == ["model", "note.txt"]
    fetched = store.fetch_artifact("t", 0, "model", tmp_path / "fetched")
    assert (fetched / "config.json").read_text() == '{"layers": 2}'
    assert (fetched / "sub" / "weights.bin").read_bytes() == b"\x00\x01\x02"
    assert store.fetch_artifact("t", 0, "note.txt", tmp_path / "n0").read_bytes() == b"first"
    assert store.fetch_artifact("t", None, "note.txt", tmp_path / "n1").read_bytes() == b"second"
    with pytest.raises(NotFoundError, match=r"t@1 has no artifact 'model'; it has \['note.txt'\]"):
        store.artifact_uri("t", 1, "model")
    with pytest.raises(StoreError, match="bad artifact name '../x'"):
        store.publish("t", table, artifacts={"../x": b""})
    assert [v.version for v in store.versions("t")] == [0, 1]  # the refused publish committed nothing
