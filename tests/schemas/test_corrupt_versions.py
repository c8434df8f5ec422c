"""Every reader refuses a version that is not exactly one publish: its row count differs from the one
its commit recorded, or its tokens repeat (as the deltalake overwrite-retry bug once committed).
The versions are planted by committing through deltalake directly."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest
from deltalake import CommitProperties, write_deltalake

from firth.pipelines.cli.main import main
from firth.schemas.consumer import open_embeddings, open_table
from firth.schemas.delta_format import delta_schema
from firth.schemas.errors import CorruptVersionError
from firth.schemas.tables import embedding_schema
from tests.helpers.tables import vectors_of, word_table


def append_through_deltalake(store, rows: pa.Table, custom_metadata: dict[str, str]) -> None:
    """Commit `rows` on top of the latest version, keeping its files: a version holding two writes."""
    stored = rows.cast(embedding_schema(8)).cast(delta_schema(embedding_schema(8)))
    write_deltalake(store.table_uri("t"), stored, mode="append",
                    commit_properties=CommitProperties(custom_metadata=custom_metadata))


def renumbered(table: pa.Table, start: int) -> pa.Table:
    """The same vectors under tokens w{start}.. and ids start.."""
    n = table.num_rows
    return table.set_column(0, "token", pa.array([f"w{start + i}" for i in range(n)])) \
        .set_column(1, "id", pa.array(range(start, start + n), pa.int32()))


CASES = {
    # the bug: a second publish's rows committed on top of the first's, counted as one publish
    "tokens repeat": (lambda: word_table(5, 8, seed=1), {"firth": json.dumps({"seed": 1})},
                      r"it holds 10 rows but its commit recorded 5; field 'token': duplicate values "
                      r"\['w0', 'w1', 'w2', 'w3', 'w4'\] \(5 in all\); each must appear once"),
    "row count differs from firth.rows": (lambda: renumbered(word_table(5, 8, seed=1), 100), {"firth.rows": "5"},
                          r"it holds 10 rows but its commit recorded 5\. It is not exactly one publish"),
    "row count differs from Delta's operation metrics": (lambda: renumbered(word_table(5, 8, seed=1), 100), None,
                                                         r"it holds 10 rows but its commit recorded 5\. It is not"),
}


@pytest.mark.parametrize("case", CASES)
def test_readers_refuse_a_version_that_is_not_one_publish(local_store, case, capsys, tmp_path):
    rows, custom_metadata, problem = CASES[case]
    first = word_table(5, 8, seed=0)
    local_store.publish("t", first, {"seed": 0})
    append_through_deltalake(local_store, rows(), custom_metadata or {})  # operationMetrics: 5 rows added
    message = rf"table 't' version 1 in store {local_store.uri}: {problem}"

    for read in (lambda: local_store.read("t", 1), lambda: local_store.read("t"), lambda: local_store.verify("t", 1),
                 lambda: open_embeddings(local_store.uri, "t@1"), lambda: open_table(local_store.uri, "t@latest")):
        with pytest.raises(CorruptVersionError, match=message):
            read()
    store = ["--store", local_store.uri]
    for command in (["neighbors", "t@1", "w0"], ["tables", "show", "t@1"],
                    ["tables", "export", "t@1", str(tmp_path / "t.txt")]):
        assert main([*command, *store]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"firth: error: table 't' version 1 in store {local_store.uri}: it holds 10 rows"), err
        assert "It is not exactly one publish, so it is not read" in err and err.count("\n") == 1
    assert not (tmp_path / "t.txt").exists()
    # the listing still shows what the commit says; the first version reads as published
    assert [(v.version, v.rows) for v in local_store.versions("t")] == [(0, 5), (1, 5)]
    assert vectors_of(local_store.read("t", 0)).tobytes() == vectors_of(first).tobytes()
    assert main(["tables", "show", "t@0", *store]) == 0


@pytest.mark.parametrize("custom_metadata", [None, {"firth.rows": "five"}, {"firth.rows": "-5"}])
def test_a_commit_that_records_no_row_count_is_refused(local_store, custom_metadata):
    from deltalake import DeltaTable

    local_store.publish("t", word_table(5, 8, seed=0))
    # a commit of no actions records no row count; the version holds version 0's rows
    DeltaTable(local_store.table_uri("t")).create_write_transaction(
        [], "append", delta_schema(embedding_schema(8)), commit_properties=CommitProperties(custom_metadata))
    assert [v.rows for v in local_store.versions("t")] == [5, None]
    with pytest.raises(CorruptVersionError, match=r"version 1 in store .*: its commit records no row count \(it was "
                                                  r"not committed by firth's publish\)"):
        local_store.read("t", 1)
