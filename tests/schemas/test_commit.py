"""The publish protocol (schemas/commit.py) on a local store, with the commit race made to happen at a
chosen point: another publisher's real commit lands between a publish's read of the table and its
own commit. Each version holds exactly one publish, a lost race is committed again on the new
version, and a publish that gives up leaves nothing behind."""
from __future__ import annotations

import pytest
from deltalake import DeltaTable

from firth.schemas import commit as commit_module
from firth.schemas.commit import COMMIT_ATTEMPTS, NothingCommitted
from firth.schemas.fs import filesystem
from firth.schemas.store import TableStore
from firth.schemas.tables import document_embedding_schema
from tests.helpers.tables import vectors_of, word_table


def another_commit_first(monkeypatch, target, attribute: str, store_uri: str, times: int) -> list[int]:
    """Make `target.attribute` (a real Delta commit call) let another publisher, with its own store
    object, commit a 9-row version of table "t" just before it, on its first `times` calls; return
    the versions those publishers were told."""
    real = getattr(target, attribute)
    told: list[int] = []
    inside = []

    def commit_after_another(*args, **kwargs):
        if not inside and len(told) < times:
            inside.append(True)  # the other publisher's own commit goes straight through
            try:
                told.append(TableStore(store_uri).publish("t", word_table(9, 8, seed=100 + len(told))))
            finally:
                inside.clear()
        return real(*args, **kwargs)

    monkeypatch.setattr(target, attribute, commit_after_another)
    return told


def parquet_files(store, name: str) -> set[str]:
    fs, root = filesystem(store.table_uri(name), store.storage_options)
    fs.invalidate_cache()
    return {p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False) if p.endswith(".parquet")}


def last_commit(store, name: str) -> dict:
    return DeltaTable(store.table_uri(name)).history(1)[0]


def test_a_commit_that_loses_the_race_is_made_again_on_the_new_version(local_store, monkeypatch):
    local_store.publish("t", word_table(5, 8, seed=0))
    told = another_commit_first(monkeypatch, DeltaTable, "create_write_transaction", local_store.uri, times=1)
    ours = word_table(40, 8, seed=1)
    assert local_store.publish("t", ours, {"who": "ours"}) == 2
    assert told == [1]
    assert [(v.version, v.rows) for v in local_store.versions("t")] == [(0, 5), (1, 9), (2, 40)]
    for version, table in enumerate([word_table(5, 8, 0), word_table(9, 8, 100), ours]):
        assert vectors_of(local_store.read("t", version)).tobytes() == vectors_of(table).tobytes()
    commit = last_commit(local_store, "t")
    assert (commit["firth.attempt"], commit["firth.read_version"], commit["firth.rows"]) == ("2", "1", "40")
    assert local_store.info("t", 2).metadata == {"who": "ours"}
    # the files were written once: three versions, three files, nothing left over
    named = {f.rsplit("/", 1)[-1] for v in range(3) for f in local_store.files("t", v)}
    assert parquet_files(local_store, "t") == named


def test_a_table_creation_that_loses_the_race_commits_on_the_winners_version(local_store, monkeypatch):
    told = another_commit_first(monkeypatch, commit_module, "create_table_with_add_actions", local_store.uri, times=1)
    ours = word_table(40, 8, seed=1)
    # the other publisher creates the table between this publish's look (no table) and its create
    assert local_store.publish("t", ours) == 1
    assert told == [0]
    assert [(v.version, v.rows) for v in local_store.versions("t")] == [(0, 9), (1, 40)]
    assert vectors_of(local_store.read("t", 0)).tobytes() == vectors_of(word_table(9, 8, 100)).tobytes()
    assert vectors_of(local_store.read("t", 1)).tobytes() == vectors_of(ours).tobytes()
    assert set(local_store.files("t", 0)).isdisjoint(local_store.files("t", 1))


def test_a_publish_that_loses_every_race_fails_cleanly_and_leaves_nothing(local_store, monkeypatch):
    local_store.publish("t", word_table(5, 8, seed=0))
    told = another_commit_first(monkeypatch, DeltaTable, "create_write_transaction", local_store.uri,
                                times=COMMIT_ATTEMPTS)
    monkeypatch.setattr(commit_module.time, "sleep", lambda seconds: None)  # the back-off: no waiting here
    lost = (rf"publish 't' to .*/tables/t: lost the commit race {COMMIT_ATTEMPTS} times in a row - each time "
            rf"another publisher committed first \(last: committing version {COMMIT_ATTEMPTS} on top of version "
            rf"{COMMIT_ATTEMPTS - 1}, which it read; .*\)\. Nothing was published and this publish's data files "
            r"were removed; publish again")
    with pytest.raises(NothingCommitted, match=lost):
        local_store.publish("t", word_table(40, 8, seed=1), artifacts={"note.txt": b"never"})
    assert told == list(range(1, COMMIT_ATTEMPTS + 1))
    versions = local_store.versions("t")
    assert [v.rows for v in versions] == [5] + [9] * COMMIT_ATTEMPTS
    named = {f.rsplit("/", 1)[-1] for v in versions for f in local_store.files("t", v.version)}
    assert parquet_files(local_store, "t") == named  # its data files are gone
    fs, root = filesystem(local_store.table_uri("t"))
    assert fs.find(f"{root}/_artifacts") == []  # and so is its artifact


def test_a_table_keeps_its_kind(local_store):
    import numpy as np
    import pyarrow as pa

    local_store.publish("t", word_table(5, 8, seed=0))
    documents = pa.table({"doc_id": ["a"], "chunk": pa.array([0], pa.int32()), "text": ["x"],
                          "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(8, np.float32)), 8)},
                         schema=document_embedding_schema(8))
    before = parquet_files(local_store, "t")
    with pytest.raises(NothingCommitted, match=r"the table has columns \['token', 'id', 'count', 'vector'\], this "
                                               r"publish has \['doc_id', 'chunk', 'text', 'vector'\]; a table keeps "
                                               r"its kind .* Nothing was published"):
        local_store.publish("t", documents)
    assert parquet_files(local_store, "t") == before
    assert [v.version for v in local_store.versions("t")] == [0]


def test_a_publish_writes_its_files_once_and_records_its_rows(local_store):
    table = word_table(30, 4, seed=3)
    assert local_store.publish("t", table) == 0
    assert local_store.publish("t", word_table(7, 4, seed=4)) == 1
    commit = last_commit(local_store, "t")
    assert (commit["firth.rows"], commit["firth.read_version"], commit["firth.attempt"]) == ("7", "0", "1")
    publish_id = local_store.info("t", 1).publish_id
    assert [f.rsplit("/", 1)[-1] for f in local_store.files("t", 1)] == [f"part-{publish_id}-00000.parquet"]
    assert [v.rows for v in local_store.versions("t")] == [30, 7]


def test_a_streamed_publish_commits_on_top_of_a_version_committed_while_it_streamed(local_store):
    import threading

    import pyarrow as pa

    from firth.schemas.tables import check, embedding_schema

    local_store.publish("t", word_table(5, 8, seed=0))
    streamed = check(word_table(40, 8, seed=1), embedding_schema(8))

    def batches_while_another_publisher_commits():
        yield from streamed.to_batches(max_chunksize=20)
        # another publisher (its own store object, its own thread) commits version 1 meanwhile
        other = threading.Thread(target=TableStore(local_store.uri).publish, args=("t", word_table(9, 8, seed=2)))
        other.start()
        other.join()

    reader = pa.RecordBatchReader.from_batches(streamed.schema, batches_while_another_publisher_commits())
    # its files are written first; its commit then reads version 1 and replaces it whole
    assert local_store.publish("t", reader) == 2
    assert [(v.version, v.rows) for v in local_store.versions("t")] == [(0, 5), (1, 9), (2, 40)]
    for version, table in enumerate([word_table(5, 8, 0), word_table(9, 8, 2), streamed]):
        assert vectors_of(local_store.read("t", version)).tobytes() == vectors_of(table).tobytes()
    commit = DeltaTable(local_store.table_uri("t")).history(1)[0]
    assert (commit["firth.read_version"], commit["firth.attempt"], commit["firth.rows"]) == ("1", "1", "40")
