"""Whole runs under faults: real `firth run` processes on the shipped sample corpus (2 shards, dim 8,
2 epochs), two at once on one table, or killed (SIGKILL of the driver) in statistics, training and
publish. Invariants: one run per table (the other exits 3 naming the holder and writes nothing);
every visible version is one whole publish; no Ray, Dask or watchdog process of a killed run is
alive 10 s after the kill; its record ends "abandoned", naming the stage; the next run takes the
lock over at once; what a dead run left is removed by the next run or `firth tables gc`."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from firth.pipelines.ops.lock import RunLock
from firth.schemas.consumer import open_embeddings
from firth.schemas.store import TableStore
from tests.helpers import ROOT, SAMPLE_SHARDS
from tests.helpers.runs import FirthRun
from tests.helpers.statistics import run_statistics

pytestmark = pytest.mark.slow

TABLE = "faults"
STATISTICS = {"n_workers": 1, "min_count": 5, "window": 3, "n_buckets": 2}


def _config(tmp_path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "table": TABLE, "corpus": {"shards": [str(s) for s in SAMPLE_SHARDS[:2]]}, "statistics": STATISTICS,
        "model": {"dim": 8, "epochs": 2, "num_workers": 1, "x_max": 10}, "store": {"uri": str(tmp_path / "store")}}))
    return path


def _scratch(store: Path) -> set[str]:
    """The run-scoped folders in the store: statistics/<run id>, checkpoints/<run id>."""
    folders = {"statistics": store / "_statistics" / TABLE / "runs", "checkpoints": store / "_checkpoints" / TABLE}
    return {f"{kind}/{p.name}" for kind, folder in folders.items() if folder.exists() for p in folder.iterdir()}


def _holder(store: Path) -> str:
    return json.loads((store / "_locks" / f"{TABLE}.lock").read_text())["run_id"]


def _record(store: Path, run_id: str) -> dict:
    return json.loads((store / "_runs" / TABLE / f"{run_id}.json").read_text())


def _assert_versions_whole(store: Path, expected_tokens: list[str]) -> list[int]:
    """Every visible version is exactly one publish: the vocabulary, once each, and readable vectors."""
    table_store = TableStore(str(store))
    if TABLE not in table_store.tables():
        return []
    versions = [v.version for v in table_store.versions(TABLE)]
    for version in versions:
        embeddings = open_embeddings(str(store), f"{TABLE}@{version}")
        assert embeddings.tokens == expected_tokens, f"version {version} does not hold one run's vocabulary"
        assert embeddings.vectors.shape == (len(expected_tokens), 8) and np.isfinite(embeddings.vectors).all()
    return versions


@pytest.fixture(scope="module")
def expected_tokens(tmp_path_factory) -> list[str]:
    """The vocabulary a clean run of the config counts (in-process statistics: no engine needed)."""
    output = tmp_path_factory.mktemp("reference")
    run_statistics(output, [str(s) for s in SAMPLE_SHARDS[:2]], **STATISTICS, cache=False)
    return pq.read_table(output / "vocabulary.parquet")["token"].to_pylist()


def test_two_concurrent_runs_one_publishes_the_other_exits_naming_it_and_writes_nothing(tmp_path, expected_tokens):
    config, store = _config(tmp_path), tmp_path / "store"
    first = FirthRun(config)
    first.wait_for("firth: statistics ...")  # the lock is taken before anything else is written
    first_run = _holder(store)
    second = FirthRun(config)
    code, out, err = second.finish(timeout=120)
    assert first.process.poll() is None, "the first run ended before the second tried: nothing was contended"
    assert code == 3, err
    assert f"table '{TABLE}' is locked by" in err and f"(run {first_run}," in err, err
    assert "published" not in out and "Traceback" not in err

    code, out, err = first.finish()
    assert code == 0, err
    assert f"published {TABLE}@0" in out
    assert _assert_versions_whole(store, expected_tokens) == [0]
    assert sorted(p.name for p in (store / "_runs" / TABLE).iterdir()) == [f"{first_run}.json"]  # none of the second
    assert _record(store, first_run)["outcome"] == "succeeded"
    # what stays: the statistics swapped in, the shared cache; no checkpoints, no lock
    statistics = store / "_statistics" / TABLE
    assert json.loads((statistics / "latest.json").read_text())["run_id"] == first_run
    assert _scratch(store) == {f"statistics/{first_run}"}
    assert list((store / "_locks").iterdir()) == []


def test_a_run_killed_in_each_stage_leaves_no_process_no_lock_and_no_half_version(tmp_path, expected_tokens):
    config, store = _config(tmp_path), tmp_path / "store"
    measured = {}
    killed = []
    previous = None
    for stage, moment in [("statistics", "EncodeShards"), ("training", "GloVe epoch 1/2"),
                          ("publish", "firth: publish ...")]:
        run = FirthRun(config, stop_at=moment)
        if previous is not None:  # the dead run's lock is taken over at once, naming it
            run.wait_for(f"took over table '{TABLE}' from run {previous}", timeout=60)
        gone_after, processes = run.kill()
        run_id = _holder(store)
        measured[stage] = (round(gone_after, 1), processes)
        record = _record(store, run_id)
        assert (record["outcome"], record["stage"]) == ("running", stage)  # dead, so far unknown as such
        _assert_versions_whole(store, expected_tokens)
        killed.append((run_id, stage))
        previous = run_id
    print(f"\nseconds until no process of the killed run was alive, and what it had started: {measured}")
    assert "raylet" in measured["training"][1] and "spawned worker (Dask)" in measured["statistics"][1]

    # The first two dead runs were swept by the run after each; the last one is for gc.
    assert _scratch(store) <= {f"{kind}/{killed[-1][0]}" for kind in ("statistics", "checkpoints")}
    print(f"scratch left by the dead runs before gc: {sorted(_scratch(store))}")
    abandoned = [_record(store, run_id) for run_id, _ in killed[:2]]
    assert [(r["outcome"], r["error"]["stage"]) for r in abandoned] == [("abandoned", "statistics"),
                                                                        ("abandoned", "training")]
    gc = subprocess.run([sys.executable, "-m", "firth.pipelines.cli.main", "tables", "gc", TABLE, "--json",
                         "--store", str(store)], cwd=ROOT, text=True, capture_output=True, timeout=120, check=False)
    assert gc.returncode == 0, gc.stderr
    last, _ = killed[-1]
    assert json.loads(gc.stdout)["abandoned_runs"] == [last]
    versions = _assert_versions_whole(store, expected_tokens)  # killed before its commit: none; after: one, whole
    record = _record(store, last)
    assert (record["outcome"], record["error"]["stage"], record["version"]) == (
        "abandoned", "publish", versions[-1] if versions else None)
    latest = store / "_statistics" / TABLE / "latest.json"  # a kill after the swap keeps the swapped-in statistics
    kept = {f"statistics/{last}"} if latest.exists() and json.loads(latest.read_text())["run_id"] == last else set()
    assert _scratch(store) == kept
    print(f"publish kill landed {'after' if versions else 'before'} the commit; versions visible: {versions}")

    lock = RunLock(str(store), TABLE, run_id="next")
    lock.acquire()  # the last dead run's lock does not block the next run either
    assert lock.took_over.run_id == last
    lock.release()
