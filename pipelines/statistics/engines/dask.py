"""The Dask engine: per-shard functions as futures on a LocalCluster or a remote scheduler.

Dask's own log records (a worker's heartbeat traceback while the cluster shuts down after a failed
task) go to the debug log named by $FIRTH_DEBUG_LOG, set by the `firth` command, in the driver and
in the local worker processes: the user sees the task's error, raised by `map`, not them.
"""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import dask
from distributed import Client, LocalCluster, WorkerPlugin, as_completed

from firth.pipelines.config import StatisticsConfig
from firth.pipelines.statistics.engines import step_progress


class DaskEngine:
    def __init__(self, config: StatisticsConfig):
        self.config = config
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None
        self._saved_handlers: list[logging.Handler] | None = None

    def __enter__(self) -> "DaskEngine":
        debug_log = os.environ.get("FIRTH_DEBUG_LOG")
        self._saved_handlers = _log_to_file(debug_log) if debug_log and not self.config.scheduler_address else None
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
            if debug_log:
                self.client.register_plugin(_LogToFile(debug_log))
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                self.cluster.close()
        finally:
            if self._saved_handlers is not None:
                logger = logging.getLogger("distributed")
                for handler in list(logger.handlers):
                    logger.removeHandler(handler)
                    if handler not in self._saved_handlers:
                        handler.close()
                for handler in self._saved_handlers:
                    logger.addHandler(handler)

    def map(self, fn, items, label):
        # Keys unique per call: a repeated label must not meet the cancelled futures of its last call.
        run = uuid.uuid4().hex[:8]
        futures = self.client.map(fn, list(items), pure=False, key=[f"{label}-{run}-{n}" for n in range(len(items))])
        position = {future.key: n for n, future in enumerate(futures)}
        results = [None] * len(futures)
        try:
            with step_progress(label, len(futures)) as bar:
                for future in as_completed(futures):
                    # Each result crosses to the driver once, as its task finishes, while the others
                    # run; a worker's exception is re-raised here, with its message.
                    results[position[future.key]] = future.result()
                    bar.update()
            return results
        finally:
            self.client.cancel(futures)


def _log_to_file(path: str) -> list[logging.Handler]:
    """Send this process's `distributed` log records to the file at `path` instead of the terminal;
    return the handlers it had."""
    logger = logging.getLogger("distributed")
    saved = list(logger.handlers)
    try:  # a fresh machine has no ~/.local/state/firth yet; the file appears with the first record
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, delay=True)
    except OSError:  # an unwritable log must not stop the statistics: the records stay on the terminal
        return saved
    for previous in saved:
        if type(previous) is logging.StreamHandler:  # the terminal (FileHandler is a StreamHandler too)
            logger.removeHandler(previous)
    handler.setLevel(logging.WARNING)  # a worker's start and stop notes are not worth keeping
    handler.setFormatter(logging.Formatter("%(asctime)s pid %(process)d %(name)s %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    return saved


class _LogToFile(WorkerPlugin):
    """Runs _log_to_file in each local worker process."""

    name = "firth-log-to-file"

    def __init__(self, path: str):
        self.path = path

    def setup(self, worker) -> None:
        _log_to_file(self.path)
