"""Engine equivalence: Beam (FnApiRunner, 2 processes) and Dask (LocalCluster, 2 processes) write
the same tables from the same kernels."""
import json
import logging
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from firth.pipelines.config import StatisticsConfig
from firth.pipelines.statistics.engines.beam import BeamEngine
from firth.pipelines.statistics.engines.dask import DaskEngine
from tests.helpers import SAMPLE
from tests.helpers.statistics import (
    assert_same_tables,
    run_statistics,
    worker_environment,
    worker_logs_a_traceback,
    worker_pid,
    worker_pid_unless_killed,
)

pytestmark = pytest.mark.slow  # every test here starts Dask or Beam worker processes


def test_beam_and_dask_write_identical_tables_on_the_sample_corpus(tmp_path):
    shards = [str(SAMPLE / "*.jsonl.gz")]
    settings = dict(n_workers=2, window=10, min_count=5, n_buckets=4)
    dask_summary, dask_root = run_statistics(tmp_path / "dask", shards, engine="dask", **settings)
    beam_summary, beam_root = run_statistics(tmp_path / "beam", shards, engine="beam", **settings)
    tables = assert_same_tables(dask_root, beam_root)  # vocabulary, idf, tokens, tfidf, cooccurrence: equal
    assert sorted(n.split("/")[0] for n in tables if "/" in n) == ["cooccurrence"] * 4 + ["tfidf"] * 8 + ["tokens"] * 8
    vocabulary = pq.read_table(dask_root / "vocabulary.parquet")
    assert vocabulary["id"].to_pylist() == list(range(vocabulary.num_rows)) and vocabulary.num_rows > 5000
    cooc = pq.read_table(dask_root / "cooccurrence")
    assert cooc.num_rows == dask_summary.n_cooccurrence_entries == beam_summary.n_cooccurrence_entries > 10 ** 6
    assert np.all(cooc["x"].to_numpy() > 0)
    tfidf = pq.read_table(dask_root / "tfidf")
    assert tfidf.num_rows > 0 and str(tfidf["tfidf"].type) == "float"
    manifest = json.loads((beam_root / "manifest.json").read_text())
    assert manifest["vocab_size"] == vocabulary.num_rows and len(manifest["processed_shards"]) == 8


def test_beam_runner_and_options_pass_through_from_config():
    local = BeamEngine(StatisticsConfig(engine="beam", n_workers=3, beam={"options": {"job_name": "nightly"}}))
    options = local._options().get_all_options(drop_default=True)
    assert options["direct_num_workers"] == 3 and "direct_running_mode" not in options  # our own workers
    assert options["job_name"] == "nightly"
    assert type(local._runner()).__name__ == "FnApiRunner"
    with BeamEngine(StatisticsConfig(engine="beam", beam={"options": {"direct_running_mode": "multi_processing"}})) as own:
        assert own._workers is None  # FnApiRunner starts its own processes per pipeline
        assert own._options().get_all_options()["direct_running_mode"] == "multi_processing"

    flink = BeamEngine(StatisticsConfig(engine="beam", beam={
        "runner": "FlinkRunner", "options": {"flink_master": "localhost:8081", "temp_location": "s3://b/tmp"}}))
    assert flink._runner() == "FlinkRunner"  # Beam resolves the name
    options = flink._options().get_all_options(drop_default=True)
    assert options["flink_master"] == "localhost:8081" and "direct_num_workers" not in options

    with pytest.raises(ValueError, match="statistics.beam.options.temp_location: required with runner 'DataflowRunner'"):
        BeamEngine(StatisticsConfig(engine="beam", beam={"runner": "DataflowRunner"})).__enter__()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # Beam's data plane, when the worker dies
def test_beam_pipelines_share_their_worker_processes_and_a_dead_one_is_reported():
    # Fresh SDK workers per pipeline cost 4-6 s of imports per step (benchmarks/README.md).
    with BeamEngine(StatisticsConfig(engine="beam", n_workers=2)) as engine:
        first, second = engine.map(worker_pid, range(8), "First"), engine.map(worker_pid, range(8), "Second")
        workers = set(first)
        assert set(second) == workers and len(workers) == 2 and os.getpid() not in workers
        assert sorted(first.count(pid) for pid in workers) == [4, 4]  # each pipeline spread over both
        with pytest.raises(RuntimeError, match=r"Beam SDK worker process \d \(pid \d+\) exited with code -9"):
            engine.map(worker_pid_unless_killed, range(8), "Dies")
    for pid in workers:  # and they end with the engine
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_dask_workers_keep_glibc_malloc_defaults_and_the_driver_its_environment():
    # Dask's default MALLOC_TRIM_THRESHOLD_=65536 slowed counting by a quarter and merging by half.
    before = dict(os.environ)
    with DaskEngine(StatisticsConfig(n_workers=2)) as engine:
        seen = engine.map(worker_environment, [0, 1], "environment")
        assert dict(os.environ) == before, "the nannies' variables leaked into the driver's environment"
    assert seen == [{"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}] * 2


def test_dask_log_records_go_to_the_debug_log_not_the_terminal(tmp_path, monkeypatch, capfd):
    log = tmp_path / "debug.log"
    monkeypatch.setenv("FIRTH_DEBUG_LOG", str(log))  # as the `firth` command sets it
    with DaskEngine(StatisticsConfig(n_workers=1)) as engine:
        assert engine.map(worker_logs_a_traceback, [7], "Log") == [7]
    err = capfd.readouterr().err
    assert "simulated heartbeat failure" not in err and "Traceback" not in err
    text = log.read_text()
    assert "distributed.worker ERROR: simulated heartbeat failure\nTraceback (most recent call last)" in text
    assert "RuntimeError: scheduler gone" in text
    assert all(type(h) is not logging.FileHandler for h in logging.getLogger("distributed").handlers)  # restored
