"""Publishers killed with SIGKILL, as real processes, on a local directory and on moto S3: while
writing, and just before, during and just after Delta's commit. Afterwards every visible version is
exactly one publish and readable, the next publish succeeds, and what the killed one left is
named by no commit and removed by gc once past its grace period."""
from __future__ import annotations

import os
import signal
import time

import pytest

from firth.schemas.retention import collect_garbage
from tests.helpers.publishers import named_files, one_publish_per_version, start_publisher, stored_files
from tests.helpers.tables import STORES, vectors_of, word_table

pytestmark = pytest.mark.slow
# How far into Delta's commit call "kill-during" strikes: on this machine a local commit took under
# 1 ms and a moto one a few ms, and these delays left some commits landed and some not.
COMMIT_KILL_DELAY_S = {"local_store": "0.0005", "s3_store": "0.005"}


@pytest.mark.parametrize("store_fixture", STORES)
@pytest.mark.parametrize("when", ["kill-before", "kill-during", "kill-after"])
def test_a_publisher_killed_around_its_commit_leaves_only_whole_versions(when, store_fixture, request):
    store = request.getfixturevalue(store_fixture)
    store.publish("t", word_table(5, 8, seed=0), {"seed": 0}, artifacts={"note.txt": b"v0"})
    process = start_publisher(store, when, "1", COMMIT_KILL_DELAY_S[store_fixture])  # 60 rows, seed 1, an artifact
    _, err = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, err
    rows_by_seed = {0: 5, 1: 60, 2: 7}
    seeds = one_publish_per_version(store, "t", rows_by_seed)
    committed = {"kill-before": [{0: 0}], "kill-during": [{0: 0}, {0: 0, 1: 1}], "kill-after": [{0: 0, 1: 1}]}
    assert seeds in committed[when]  # killed during the commit: it landed whole or not at all

    assert store.publish("t", word_table(7, 8, seed=2), {"seed": 2}) == len(seeds)  # the table takes the next one
    assert one_publish_per_version(store, "t", rows_by_seed) == {**seeds, len(seeds): 2}
    data, artifacts = named_files(store, "t")
    assert collect_garbage(store, "t", keep=10).orphans == []  # younger than the grace period: kept
    swept = collect_garbage(store, "t", keep=10, orphan_grace_hours=-1)
    # a commit that never landed leaves its data file and its artifact folder, and nothing else
    assert len(swept.orphans) == (2 if len(seeds) == 1 else 0), swept.orphans
    assert stored_files(store, "t") == (data, artifacts)
    assert one_publish_per_version(store, "t", rows_by_seed) == {**seeds, len(seeds): 2}


@pytest.mark.parametrize("store_fixture", STORES)
def test_a_publisher_killed_mid_write_leaves_the_previous_version(store_fixture, request):
    store = request.getfixturevalue(store_fixture)
    store.publish("t", word_table(5, 8, seed=0), {"seed": 0})
    process = start_publisher(store, "slow-stream", "1")
    assert process.stdout.readline().strip() == "streaming"  # two batches are in the publish's hands
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
    assert stored_files(store, "t") == named_files(store, "t")
    assert vectors_of(store.read("t", 0)).tobytes() == vectors_of(word_table(5, 8, 0)).tobytes()
