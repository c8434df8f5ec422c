"""Running the statistics job graph in tests, and reading back everything it wrote."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from firth.pipelines.config import JobConfig
from firth.pipelines.corpus.shards import list_shards
from firth.pipelines.statistics.engines import open_engine
from firth.pipelines.statistics.kernels import Cooc
from firth.pipelines.statistics.steps import Location, compute_statistics
from firth.schemas.statistics import StatisticsSummary


class InProcessEngine:
    """The Engine seam run in the test process, one item after another: for tests of what the job
    graph computes (budgets, cache), where which engine runs it does not matter. The Dask and Beam
    engines themselves are tested for real (test_statistics.py, test_statistics_engines.py)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def map(self, fn, items, label):
        return [fn(item) for item in items]


def config_for(shards: list[str], **statistics) -> JobConfig:
    return JobConfig.model_validate({"table": "t", "corpus": {"shards": shards}, "statistics": statistics})


def run_statistics(output: Path, shards: list[str], *, engine: str = "in-process", cache_uri: Path | None = None,
                   **statistics) -> tuple[StatisticsSummary, Path]:
    config = config_for(shards, **({"engine": engine} if engine != "in-process" else {}), **statistics)
    location = Location(str(output), {}, cache_uri=str(cache_uri) if cache_uri else None)
    with (InProcessEngine() if engine == "in-process" else open_engine(config.statistics)) as runner:
        summary = compute_statistics(list_shards(config.corpus), config, runner, location)
    return summary, output


def read_tree(root: Path) -> dict:
    """Every output table under root, by relative path (the cache of partial results left out)."""
    return {str(p.relative_to(root)): pq.read_table(p) for p in sorted(root.rglob("*.parquet"))
            if p.relative_to(root).parts[0] != "cache"}


def assert_same_tables(a: Path, b: Path) -> dict:
    tables_a, tables_b = read_tree(a), read_tree(b)
    assert sorted(tables_a) == sorted(tables_b)
    for name in tables_a:
        assert tables_a[name].equals(tables_b[name]), name
    return tables_a


# Task functions for engine tests; here, not in a test module, because engine workers import them by name.
def worker_environment(_) -> dict:
    return {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}


def worker_logs_a_traceback(n: int) -> int:
    """Logs as a Dask worker does when its heartbeat fails (distributed/worker.py: logger.exception)."""
    import logging

    try:
        raise RuntimeError("scheduler gone")
    except RuntimeError:
        logging.getLogger("distributed.worker").exception("simulated heartbeat failure")
    return n


def worker_pid(_) -> int:
    return os.getpid()


def worker_pid_unless_killed(n: int) -> int:
    """Item 3 kills its worker process, as the OS does when memory runs out."""
    if n == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.2)  # the other tasks are still running when it dies
    return os.getpid()


def zipf_corpus(seed: int, n_tokens: int, vocab_size: int, n_docs: int):
    """Frequency-ranked ids (small = frequent) with ~5% OOV, cut into documents (some empty)."""
    rng = np.random.default_rng(seed)
    ids = rng.zipf(1.3, n_tokens) - 1
    ids[ids >= vocab_size] = -1
    cuts = np.sort(rng.integers(0, n_tokens + 1, n_docs - 1))
    return ids.astype(np.int32), np.concatenate([[0], cuts, [n_tokens]])


def assert_same_bytes(a: Cooc, b: Cooc):
    assert a.scale == b.scale
    for name in ("i", "j", "units"):
        assert getattr(a, name).dtype == getattr(b, name).dtype
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert a.x.tobytes() == b.x.tobytes()
