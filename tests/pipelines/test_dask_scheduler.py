"""statistics.scheduler_address: a real `dask scheduler` + 2 `dask worker` processes on 127.0.0.1 write
exactly the tables the local engine writes."""
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from distributed import Client

from firth.pipelines.config import JobConfig
from firth.pipelines.corpus.shards import list_shards
from firth.pipelines.statistics.engines import open_engine
from firth.pipelines.statistics.steps import Location, compute_statistics
from tests.conftest import free_port
from tests.helpers import SAMPLE

pytestmark = pytest.mark.slow  # every test here starts Ray, Dask, Beam, a server or a subprocess

DASK = Path(sys.executable).parent / "dask"


@pytest.fixture(scope="module")
def dask_scheduler(tmp_path_factory):
    """A scheduler and two single-threaded workers, each its own process; the workers import the
    installed firth package, as a cluster's workers would."""
    folder = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ)
    processes = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(folder / "scheduler.log", "wb"))]
    for n in range(2):
        processes.append(subprocess.Popen(
            [str(DASK), "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard",
             "--name", f"worker-{n}", "--local-directory", str(folder / f"worker-{n}")],
            env=env, stdout=subprocess.DEVNULL, stderr=open(folder / f"worker-{n}.log", "wb")))
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _statistics(tmp_path, name, **statistics):
    config = JobConfig.model_validate({
        "table": "t", "corpus": {"shards": [str(p) for p in sorted(SAMPLE.glob("*.jsonl.gz"))[:2]]},
        "statistics": {"window": 5, "min_count": 3, "n_buckets": 3, **statistics}})
    location = Location(str(tmp_path / name), {})
    with open_engine(config.statistics) as engine:
        summary = compute_statistics(list_shards(config.corpus), config, engine, location)
    return summary, {str(p.relative_to(tmp_path / name)): pq.read_table(p)
                     for p in sorted((tmp_path / name).rglob("*.parquet"))
                     if p.relative_to(tmp_path / name).parts[0] != "cache"}  # the per-shard cache is not output


def test_an_external_scheduler_writes_the_tables_of_the_local_engine(dask_scheduler, tmp_path):
    remote, remote_tables = _statistics(tmp_path, "remote", scheduler_address=dask_scheduler)
    with Client(dask_scheduler) as client:  # both workers took part
        assert len(client.scheduler_info()["workers"]) == 2
    local, local_tables = _statistics(tmp_path, "local", n_workers=1)
    assert sorted(remote_tables) == sorted(local_tables) == sorted(
        ["vocabulary.parquet", "idf.parquet", "tokens/shard-00000.parquet", "tokens/shard-00001.parquet",
         "tfidf/shard-00000.parquet", "tfidf/shard-00001.parquet",
         "cooccurrence/part-00000.parquet", "cooccurrence/part-00001.parquet", "cooccurrence/part-00002.parquet"])
    for name, table in local_tables.items():
        assert remote_tables[name].equals(table), name
    assert (remote.vocab_size, remote.n_tokens, remote.n_cooccurrence_entries) == (
        local.vocab_size, local.n_tokens, local.n_cooccurrence_entries)
    assert local.vocab_size > 500
