"""The Dask engine: per-shard functions as futures on a LocalCluster or a remote scheduler."""
from __future__ import annotations

import logging
import os
import uuid

import dask
from distributed import Client, LocalCluster, as_completed
from tqdm.auto import tqdm

from firth.pipelines.config import StatisticsConfig


class DaskEngine:
    def __init__(self, config: StatisticsConfig):
        self.config = config
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None

    def __enter__(self) -> "DaskEngine":
        if self.config.scheduler_address:
            self.client = Client(self.config.scheduler_address)
        else:
            # One thread per worker process: the kernels are single-threaded numba/numpy and
            # the GIL would serialise threads doing Python-level parsing.
            # Dask's nannies give their workers MALLOC_TRIM_THRESHOLD_=65536: glibc then hands
            # every freed block over 64 KiB back to the OS, and each of the kernels' large
            # temporary arrays is page-faulted afresh (co-occurrence counting 25 % and merging
            # 45 % slower here; benchmarks/README.md). Workers keep glibc's adaptive default.
            # The nannies also export their variables into this process's environment, where
            # later child processes (Ray's workers) would inherit them: that is undone.
            saved = dict(os.environ)
            try:
                with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
                    self.cluster = LocalCluster(n_workers=self.config.n_workers, threads_per_worker=1,
                                                processes=True, host="127.0.0.1", dashboard_address=None,
                                                silence_logs=logging.ERROR)
            finally:
                os.environ.clear()
                os.environ.update(saved)
            self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def map(self, fn, items, label):
        # Keys unique per call: a repeated label must not meet the cancelled futures of its last call.
        run = uuid.uuid4().hex[:8]
        futures = self.client.map(fn, list(items), pure=False, key=[f"{label}-{run}-{n}" for n in range(len(items))])
        position = {future.key: n for n, future in enumerate(futures)}
        results = [None] * len(futures)
        try:
            with tqdm(total=len(futures), desc=label, unit="task", leave=False) as bar:
                for future in as_completed(futures):
                    # Each result crosses to the driver once, as its task finishes, while the others
                    # run; a worker's exception is re-raised here, with its message.
                    results[position[future.key]] = future.result()
                    bar.update()
            return results
        finally:
            self.client.cancel(futures)
