"""Concurrent and killed publishers, as real processes, on a local directory and on moto S3:
nothing is lost, nothing is half-visible."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firth.schemas.fs import filesystem
from firth.schemas.retention import collect_garbage
from tests.helpers.tables import STORES, vectors_of, word_table

PUBLISHER = str(Path(__file__).resolve().parent / "publisher_process.py")


def start(store, seed: int, start_at: float, mode: str = "table") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, PUBLISHER, store.uri, json.dumps(store.storage_options), str(seed),
                             str(start_at), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("store_fixture", STORES)
def test_two_publisher_processes_at_once_lose_nothing(store_fixture, request):
    store = request.getfixturevalue(store_fixture)
    store.publish("t", word_table(5, 8, seed=0), {"seed": 0})
    start_at = time.time() + 3.0  # both processes have imported everything by then
    processes = [start(store, seed, start_at) for seed in (1, 2)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    # a whole-table publish that loses the commit race is committed again: both become versions
    assert sorted(r["version"] for r in results) == [1, 2], results
    versions = store.versions("t")
    assert [v.version for v in versions] == [0, 1, 2]
    for result, seed in zip(results, (1, 2)):
        assert store.info("t", result["version"]).metadata == {"seed": seed}
        assert vectors_of(store.read("t", result["version"])).tobytes() == vectors_of(word_table(200, 8, seed)).tobytes()
    assert vectors_of(store.read("t", 0)).tobytes() == vectors_of(word_table(5, 8, 0)).tobytes()


@pytest.mark.parametrize("store_fixture", STORES)
def test_a_publisher_killed_mid_write_leaves_the_previous_version(store_fixture, request):
    store = request.getfixturevalue(store_fixture)
    store.publish("t", word_table(5, 8, seed=0), {"seed": 0})
    process = start(store, 1, 0, "slow-stream")
    assert process.stdout.readline().strip() == "streaming"  # two batches are in deltalake's hands
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert [v.version for v in store.versions("t")] == [0]
    assert vectors_of(store.read("t")).tobytes() == vectors_of(word_table(5, 8, 0)).tobytes()
    assert store.publish("t", word_table(7, 8, seed=2)) == 1  # and the table takes the next publish
    assert store.read("t").num_rows == 7
    # gc sweeps what the killed publisher left (named by no commit) and nothing else
    collect_garbage(store, "t", keep=2, orphan_grace_hours=-1)
    fs, root = filesystem(store.table_uri("t"), store.storage_options)
    fs.invalidate_cache()
    left = {path.rsplit("/", 1)[-1] for path in fs.ls(root, detail=False) if path.endswith(".parquet")}
    assert left == {uri.rsplit("/", 1)[-1] for uri in store.files("t", 0) + store.files("t", 1)}
    assert vectors_of(store.read("t", 0)).tobytes() == vectors_of(word_table(5, 8, 0)).tobytes()


def test_a_streamed_publish_commits_on_top_of_a_version_committed_while_it_streamed(local_store):
    import threading

    import pyarrow as pa
    from deltalake import DeltaTable

    from firth.schemas.store import TableStore
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
