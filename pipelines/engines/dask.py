"""The Dask engine: per-shard functions as futures on a LocalCluster or a remote scheduler."""
from __future__ import annotations

import logging

from distributed import Client, LocalCluster, as_completed
from tqdm.auto import tqdm

from pipelines.config import StatisticsConfig


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
            self.cluster = LocalCluster(n_workers=self.config.n_workers, threads_per_worker=1, processes=True,
                                        host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def map(self, fn, items, label):
        futures = self.client.map(fn, list(items), pure=False, key=[f"{label}-{n}" for n in range(len(items))])
        try:
            with tqdm(total=len(futures), desc=label, unit="task", leave=False) as bar:
                for future in as_completed(futures):
                    future.result()  # re-raises a worker's exception here, with its message
                    bar.update()
            return self.client.gather(futures)
        finally:
            self.client.cancel(futures)
