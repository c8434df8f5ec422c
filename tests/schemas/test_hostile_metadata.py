"""Hostile metadata: commits, alias files and run records edited to name paths outside the store
('..', absolute paths, file:// and s3:// URIs). gc, reads, exports, artifact fetches and alias moves
refuse them with an error naming what they refused, and a sentinel folder outside the store
survives byte for byte."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from deltalake import DeltaTable

from firth.pipelines.cli.main import main
from firth.pipelines.ops.run_records import RunLog, RunRecord
from firth.schemas.aliases import move_alias, rollback_alias
from firth.schemas.commit import NothingCommitted
from firth.schemas.consumer import open_embeddings
from firth.schemas.errors import StoreError, UnsafePathError
from firth.schemas.fs import filesystem
from firth.schemas.retention import collect_garbage
from firth.schemas.subwords import HASH
from tests.helpers.tables import word_table


@pytest.fixture
def victim(tmp_path):
    """A folder beside the store, with files a naive reader would read and a naive gc delete."""
    folder = tmp_path / "victim"
    (folder / "sub").mkdir(parents=True)
    (folder / "secret.txt").write_bytes(b"do not touch")
    (folder / "sub" / "deep.txt").write_bytes(b"nor this")
    return folder


def snapshot(fs, root: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {path: fs.cat_file(path) for path in sorted(fs.find(root))}


def plant_commit(store, name: str, info: dict, adds: list[dict] | None = None) -> int:
    """Write the table's next Delta log entry by hand, as anyone who can write to the store could:
    commitInfo `info`; with `adds`, those add actions replacing every file of the latest version."""
    dt = DeltaTable(store.table_uri(name), storage_options=store.storage_options or None)
    version, now = dt.version() + 1, int(time.time() * 1000)
    actions = [{"commitInfo": {"timestamp": now, "operation": "WRITE", **info}}]
    if adds is not None:
        current = dt.get_add_actions(flatten=True)
        actions += [{"remove": {"path": p, "deletionTimestamp": now, "dataChange": True}}
                    for p in current.column("path").to_pylist()]
        actions += [{"add": {"partitionValues": {}, "modificationTime": now, "dataChange": True, **a}} for a in adds]
    fs, root = filesystem(f"{store.table_uri(name)}/_delta_log", store.storage_options)
    fs.pipe_file(f"{root}/{version:020d}.json", "\n".join(json.dumps(a) for a in actions).encode())
    return version


def firth_commit(publish_id: str, artifacts: dict[str, str], rows: int = 5, metadata: dict | None = None) -> dict:
    return {"firth": json.dumps(metadata or {}), "firth.dim": "8", "firth.rows": str(rows),
            "firth.publish_id": publish_id, "firth.artifacts": json.dumps(artifacts)}


def cli(store, *args: str) -> int:
    return main([*args, "--store", store.uri])


@pytest.mark.parametrize("publish_id", ["../../../../victim", "ABS", "file://ABS", "s3://another-bucket/victim"])
def test_gc_refuses_a_publish_id_that_leaves_the_store(local_store, victim, publish_id, capsys):
    publish_id = publish_id.replace("ABS", str(victim))
    local_store.publish("t", word_table(5, 8, seed=0), artifacts={"note.txt": b"v0"})
    plant_commit(local_store, "t", firth_commit(publish_id, {"note.txt": f"_artifacts/{publish_id}/note.txt"}))
    local_store.publish("t", word_table(6, 8, seed=2))
    fs, store_root = filesystem(local_store.uri)
    store_before, victim_before = snapshot(fs, store_root), snapshot(fs, str(victim))

    assert cli(local_store, "tables", "gc", "t", "--keep", "1", "--orphan-grace-hours", "-1") == 2
    assert f"gc 't': version 1's commit: publish id: {publish_id!r} is not a plain name (32 hex digits); refusing " \
           "to use it in a path" in capsys.readouterr().err
    with pytest.raises(UnsafePathError, match=r"version 1, artifact 'note.txt': publish id: .* is not a plain name"):
        local_store.fetch_artifact("t", 1, "note.txt", victim / "fetched")
    assert snapshot(fs, str(victim)) == victim_before
    assert snapshot(fs, store_root) == store_before  # gc refused before removing or recording anything


@pytest.mark.slow  # moto_server
def test_gc_refuses_a_publish_id_that_leaves_an_s3_store(s3_store, s3_bucket):
    bucket = s3_bucket[0]
    fs, _ = filesystem(f"s3://{bucket}", s3_store.storage_options)
    fs.pipe_file(f"{bucket}/victim/secret.txt", b"do not touch")
    s3_store.publish("t", word_table(5, 8, seed=0), artifacts={"note.txt": b"v0"})
    hostile = "../../../../../victim"  # from <bucket>/stores/main/tables/t/_artifacts up to the bucket
    plant_commit(s3_store, "t", firth_commit(hostile, {"note.txt": f"_artifacts/{hostile}/note.txt"}))
    s3_store.publish("t", word_table(6, 8, seed=2))
    before = snapshot(fs, bucket)
    with pytest.raises(UnsafePathError, match=r"gc 't': version 1's commit: publish id: '\.\./\.\./"):
        collect_garbage(s3_store, "t", keep=1, orphan_grace_hours=-1)
    assert snapshot(fs, bucket) == before


@pytest.mark.parametrize("path", ["../../../victim/data.parquet", "%2E%2E/%2E%2E/%2E%2E/victim/data.parquet",
                                  "ABS/data.parquet", "file://ABS/data.parquet", "s3://another-bucket/data.parquet"])
def test_a_version_whose_data_files_leave_the_table_is_refused_everywhere(local_store, victim, path, capsys):
    local_store.publish("t", word_table(5, 8, seed=0))
    source = local_store.files("t", 0)[0]
    (victim / "data.parquet").write_bytes(open(source, "rb").read())  # a naive reader would read it happily
    path = path.replace("ABS", str(victim))
    plant_commit(local_store, "t", firth_commit(uuid.uuid4().hex, {}),
                 adds=[{"path": path, "size": (victim / "data.parquet").stat().st_size,
                        "stats": json.dumps({"numRecords": 5})}])
    fs, store_root = filesystem(local_store.uri)
    store_before, victim_before = snapshot(fs, store_root), snapshot(fs, str(victim))

    refused = r"table 't' in store .*, version 1: data file .* is not a plain name"
    for read in (lambda: local_store.read("t", 1), lambda: local_store.read("t"), lambda: local_store.files("t", 1),
                 lambda: local_store.verify("t", 1), lambda: open_embeddings(local_store.uri, "t@1")):
        with pytest.raises(UnsafePathError, match=refused):
            read()
    with pytest.raises(NothingCommitted, match=r"publish 't' to .*: the latest version is not firth's to replace: "
                                               r"version 1: data file .* is not a plain name.* Nothing was published"):
        local_store.publish("t", word_table(6, 8, seed=2))  # its own files are removed again
    capsys.readouterr()
    for command in (["tables", "export", "t@1", str(victim / "out.txt")], ["neighbors", "t@1", "w0"],
                    ["tables", "show", "t@1"], ["tables", "gc", "t", "--keep", "1", "--orphan-grace-hours", "-1"]):
        assert cli(local_store, *command) == 2, command
        err = capsys.readouterr().err
        assert err.startswith("firth: error: ") and "data file" in err and err.count("\n") == 1, err
    assert snapshot(fs, str(victim)) == victim_before
    assert snapshot(fs, store_root) == store_before
    assert local_store.read("t", 0).num_rows == 5  # the version firth published reads as ever


@pytest.mark.parametrize("artifacts, asked", [
    ({"note.txt": "../../../victim/secret.txt"}, "note.txt"),
    ({"note.txt": "_artifacts/PID/../../../../victim/secret.txt"}, "note.txt"),
    ({"../../../../victim/secret.txt": "_artifacts/PID/../../../../victim/secret.txt"},
     "../../../../victim/secret.txt"),
])
def test_artifact_paths_outside_their_version_are_refused(local_store, victim, artifacts, asked):
    local_store.publish("t", word_table(5, 8, seed=0))
    publish_id = uuid.uuid4().hex
    artifacts = {k: v.replace("PID", publish_id) for k, v in artifacts.items()}
    subwords = {"hash": HASH, "artifact": asked, "min_n": 3, "max_n": 6, "buckets": 100}
    plant_commit(local_store, "t", firth_commit(publish_id, artifacts, metadata={"subwords": subwords}))
    victim_before = snapshot(filesystem(str(victim))[0], str(victim))
    with pytest.raises(UnsafePathError, match=rf"version 1, artifact {asked!r}"):
        local_store.fetch_artifact("t", 1, asked, victim / "fetched")
    with pytest.raises(UnsafePathError, match=rf"version 1, artifact {asked!r}"):
        open_embeddings(local_store.uri, "t@1")  # fastText metadata: loads its n-gram artifact
    collect_garbage(local_store, "t", keep=1, orphan_grace_hours=-1)  # collects version 0, whose files 1 reads
    assert snapshot(filesystem(str(victim))[0], str(victim)) == victim_before


@pytest.mark.parametrize("record", [{"version": "../../../../victim"}, {"version": -1},
                                    {"version": 0, "history": [{"version": "../x", "action": "promote", "at": "t"}]},
                                    {"version": 0, "history": [{"version": 0, "action": "rm -rf", "at": "t"}]}])
def test_alias_records_that_are_not_alias_records_are_refused(local_store, victim, record, capsys):
    local_store.publish("t", word_table(5, 8, seed=0))
    local_store.publish("t", word_table(6, 8, seed=1))
    fs, store_root = filesystem(local_store.uri)
    fs.makedirs(f"{local_store.table_uri('t')}/_aliases", exist_ok=True)
    fs.pipe_file(f"{local_store.table_uri('t')}/_aliases/production.json", json.dumps(record).encode())
    store_before, victim_before = snapshot(fs, store_root), snapshot(fs, str(victim))
    refused = r"alias t@production: .*/_aliases/production.json is not an alias record"
    for operation in (lambda: local_store.resolve("t@production"), lambda: collect_garbage(local_store, "t", keep=1),
                      lambda: move_alias(local_store, "t", "production", 1),
                      lambda: rollback_alias(local_store, "t", "production")):
        with pytest.raises(StoreError, match=refused):
            operation()
    assert cli(local_store, "tables", "promote", "t@1", "--alias", "production") == 2
    assert "is not an alias record" in capsys.readouterr().err
    assert snapshot(fs, store_root) == store_before
    assert snapshot(fs, str(victim)) == victim_before


def test_run_ids_and_tables_of_run_records_must_be_plain_names(local_store, victim, capsys):
    log = RunLog(local_store.uri)
    for run_id in ("../../victim/secret", "/etc/passwd", "s3://b/x", "*"):
        with pytest.raises(UnsafePathError, match="run id: .* is not a plain name"):
            log.get(run_id)
        assert cli(local_store, "runs", "show", run_id) == 2
        assert "is not a plain name" in capsys.readouterr().err
    record = RunRecord(run_id="20260101T000000000-abcd", table="../../victim", outcome="running", started_at="x",
                       updated_at="x", config={})
    with pytest.raises(UnsafePathError, match=r"run record of table '\.\./\.\./victim'"):
        log.write(record)
    with pytest.raises(UnsafePathError, match="run records: table"):
        log.list("../../victim")
    assert sorted(p.name for p in victim.rglob("*")) == ["deep.txt", "secret.txt", "sub"]
