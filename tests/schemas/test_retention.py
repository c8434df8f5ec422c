"""gc: keeps the newest N and every version on an alias's rollback stack, removes only files no kept
version reads, and a collected version fails to read with a clear error; local and moto S3."""
from __future__ import annotations

import json

import pytest

from firth.pipelines.cli.main import main
from firth.schemas.aliases import move_alias, rollback_alias
from firth.schemas.errors import CollectedError
from firth.schemas.fs import filesystem
from firth.schemas.retention import collect_garbage, plan_gc
from tests.helpers.tables import STORES, vectors_of, word_table


def exists(store, uri: str) -> bool:
    fs, path = filesystem(uri, store.storage_options)
    fs.invalidate_cache()
    return fs.exists(path)


@pytest.mark.slow
@pytest.mark.parametrize("store_fixture", STORES)
def test_gc_keeps_newest_and_aliased_versions_and_removes_the_rest(store_fixture, request):
    store = request.getfixturevalue(store_fixture)
    tables = [word_table(5, 2, seed=v) for v in range(7)]
    for v, table in enumerate(tables):
        store.publish("t", table, artifacts={"note.txt": f"v{v}".encode()} if v in (4, 5) else None)
    move_alias(store, "t", "production", 1, action="promote")
    move_alias(store, "t", "production", 3, action="promote")  # stack [1, 3]: 1 is a rollback target
    move_alias(store, "t", "staging", 0, action="promote")
    move_alias(store, "t", "staging", 2, action="promote")
    rollback_alias(store, "t", "staging")  # stack [0]: 2 is no longer reachable
    files = {v: store.files("t", v) for v in range(7)}
    artifact_4, artifact_5 = (store.artifact_uri("t", v, "note.txt") for v in (4, 5))

    dry = collect_garbage(store, "t", keep=2, dry_run=True)
    assert dry.collected == [2, 4] and not dry.done
    assert dry.kept == {5: ["newest 2"], 6: ["newest 2"], 1: ["alias production rollback target"],
                        3: ["alias production"], 0: ["alias staging"]}
    assert sorted(f.uri for f in dry.files) == sorted(files[2] + files[4])
    assert all(exists(store, uri) for uri in files[2] + files[4])  # a dry run removes nothing

    done = collect_garbage(store, "t", keep=2)
    assert done.collected == [2, 4] and done.done and done.bytes > 0
    assert not any(exists(store, uri) for uri in files[2] + files[4])
    assert not exists(store, artifact_4) and exists(store, artifact_5)
    for v in (0, 1, 3, 5, 6):
        assert all(exists(store, uri) for uri in files[v])
        assert vectors_of(store.read("t", v)).tobytes() == vectors_of(tables[v]).tobytes()
    with pytest.raises(CollectedError, match=r"version 2 was removed by `firth tables gc` at .*; its metadata is "
                                             r"still listed"):
        store.read("t", 2)
    with pytest.raises(CollectedError, match="version 4 was removed"):
        move_alias(store, "t", "production", 4)  # no alias may point at a collected version
    assert [v.version for v in store.versions("t")] == list(range(7))  # the log keeps every commit
    assert store.info("t", 2).rows == 5
    assert store.collected("t").keys() == {2, 4}
    assert plan_gc(store, "t", keep=2).collected == []  # nothing left to do


def test_gc_cli_reports_what_it_removes(local_store, capsys):
    for v in range(4):
        local_store.publish("t", word_table(3, 2, seed=v))
    store = ["--store", local_store.uri]
    capsys.readouterr()
    assert main(["tables", "gc", "t", "--keep", "2", "--dry-run", "--json", *store]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["collected"], report["dry_run"], len(report["files"])) == ([0, 1], True, 2)
    assert main(["tables", "gc", "t", "--keep", "2", *store]) == 0
    out = capsys.readouterr().out
    assert "removed versions 0, 1: 2 data files" in out and all(f in out for f in report["files"])
    assert main(["tables", "versions", "t", "--json", *store]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["collected"], v["aliases"]) for v in listed] == [
        (0, True, []), (1, True, []), (2, False, []), (3, False, ["latest"])]
    assert main(["tables", "show", "t@0", *store]) == 0  # metadata of a collected version is still shown
    assert main(["neighbors", "t@0", "w1", *store]) == 2
    assert "version 0 was removed by `firth tables gc`" in capsys.readouterr().err
    assert main(["tables", "gc", "t", "--keep", "2", "--json", *store]) == 0  # nothing left: a real run still
    again = json.loads(capsys.readouterr().out)
    assert (again["collected"], again["files"], again["dry_run"]) == ([], [], False)
    assert main(["tables", "gc", "t", "--keep", "0", *store]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("store_fixture", STORES)
def test_a_failed_publish_cleans_up_and_gc_removes_orphans_of_killed_ones_after_the_grace_period(store_fixture, request):
    import pyarrow as pa

    from firth.schemas.tables import check, embedding_schema

    store = request.getfixturevalue(store_fixture)
    store.publish("t", word_table(4, 2, seed=0), artifacts={"note.txt": b"kept"})
    table = check(word_table(50, 2, seed=1), embedding_schema(2))

    def dies_after_writing():
        yield from table.to_batches(max_chunksize=10)
        raise ConnectionError("killed")

    fs, root = filesystem(store.table_uri("t"), store.storage_options)
    before = sorted(fs.find(root))
    with pytest.raises(ConnectionError):  # a publish that fails cleans up its own files
        store.publish("t", pa.RecordBatchReader.from_batches(table.schema, dies_after_writing()),
                      artifacts={"note.txt": b"orphan"})
    fs.invalidate_cache()
    assert sorted(fs.find(root)) == before
    # what a killed publish leaves: an artifact folder and a data file that no commit names
    fs.makedirs(f"{root}/_artifacts/{'ab' * 16}", exist_ok=True)
    fs.pipe_file(f"{root}/_artifacts/{'ab' * 16}/note.txt", b"orphan")
    stray = f"{root}/part-{'ab' * 16}-00000.parquet"
    fs.pipe_file(stray, b"PAR1")
    fs.invalidate_cache()
    artifact_folders = fs.ls(f"{root}/_artifacts", detail=False)
    assert len(artifact_folders) == 2

    assert collect_garbage(store, "t", keep=1).orphans == []  # younger than 24 h: may be a publish in flight
    removed = collect_garbage(store, "t", keep=1, orphan_grace_hours=-1)  # everything counts as old
    orphan_artifact = next(f for f in artifact_folders if store.info("t").publish_id not in f)
    assert removed.done and [o.rsplit("/", 1)[-1] for o in removed.orphans] == [
        orphan_artifact.rsplit("/", 1)[-1], stray.rsplit("/", 1)[-1]]
    assert not any(exists(store, uri) for uri in removed.orphans)
    assert exists(store, store.artifact_uri("t", 0, "note.txt"))
    assert all(exists(store, uri) for uri in store.files("t", 0))
    assert vectors_of(store.read("t")).tobytes() == vectors_of(word_table(4, 2, 0)).tobytes()
