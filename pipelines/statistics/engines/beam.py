"""The Beam engine: each `map` is one Beam pipeline, Create(items) → Reshuffle → Map(fn).

Runner: `statistics.beam.runner`. The default, FnApiRunner, runs locally on `statistics.n_workers`
SDK worker processes that the engine starts once and every step's pipeline reuses
(pipelines/statistics/engines/beam_workers.py); it never downloads anything, unlike Beam's default runner,
which fetches Prism. Setting `direct_running_mode` in the options hands the workers back to
FnApiRunner (e.g. `multi_processing`: fresh processes per pipeline). Any other runner name
(FlinkRunner, SparkRunner, DataflowRunner, PortableRunner) and `statistics.beam.options` go to
Beam untouched.

Results come back through files: element n's result is pickled to `<results>/<label>/<n>.pkl`,
where `<results>` is the `temp_location` option (needed on a remote runner, e.g. gs:// or
s3://) or a local temporary folder. The driver counts those files for the progress bar while
the pipeline runs and reads them in item order when it is done.
"""
from __future__ import annotations

import logging
import pickle
import shutil
import tempfile
import threading
import uuid
from typing import Sequence

from firth.pipelines.config import StatisticsConfig
from firth.pipelines.statistics.engines import step_progress
from firth.pipelines.statistics.engines.beam_workers import SdkWorkerProcesses, import_beam
from firth.schemas.fs import filesystem, join, open_atomic

_LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner")  # workers on this machine: a local results folder works


class BeamEngine:
    def __init__(self, config: StatisticsConfig, warm_imports: Sequence[str] = ()):
        self.config = config
        self.warm_imports = tuple(warm_imports)
        self._results_root: str | None = None
        self._local_tmp: str | None = None
        self._workers: SdkWorkerProcesses | None = None

    def __enter__(self) -> "BeamEngine":
        import_beam()  # fail here, not inside the first map, if Beam is missing
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
        # FnApiRunner warns that more than one worker wants direct_running_mode set; on our own
        # worker processes (below) it must stay unset, or FnApiRunner would start its own.
        logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner").setLevel(logging.ERROR)
        temp = self.config.beam.options.get("temp_location")
        if not temp and self.config.beam.runner not in _LOCAL_RUNNERS:
            raise ValueError(f"statistics.beam.options.temp_location: required with runner "
                             f"{self.config.beam.runner!r}: its workers write each step's results there; give a "
                             "URI that the workers and this machine can both reach (s3://..., gs://...)")
        if self.config.beam.runner == "FnApiRunner":
            if "direct_running_mode" not in self.config.beam.options:
                # First: if they fail to start, nothing else has been created yet.
                self._workers = SdkWorkerProcesses(self.config.n_workers, self.warm_imports).__enter__()
        if temp:
            self._results_root = join(temp, f"firth-{uuid.uuid4().hex[:12]}")
        else:
            self._local_tmp = tempfile.mkdtemp(prefix="firth-beam-")
            self._results_root = self._local_tmp
        return self

    def __exit__(self, *exc) -> None:
        if self._workers is not None:
            self._workers.__exit__(*exc)
        if self._local_tmp:
            shutil.rmtree(self._local_tmp, ignore_errors=True)
        elif self._results_root:
            fs, path = filesystem(self._results_root, {})
            if fs.exists(path):
                fs.rm(path, recursive=True)

    def map(self, fn, items, label):
        import apache_beam as beam

        items = list(items)
        results = join(self._results_root, f"{label}-{uuid.uuid4().hex[:8]}")
        pipeline = beam.Pipeline(runner=self._runner(), options=self._options())
        _ = (pipeline
             | f"{label}/Create" >> beam.Create(list(enumerate(items)))
             | f"{label}/Spread" >> beam.Reshuffle()  # lets the runner split the items over its workers
             | label >> beam.Map(_run_and_store, fn, results))
        failure: list[BaseException] = []

        def run() -> None:
            try:
                pipeline.run().wait_until_finish()
            except BaseException as e:  # re-raised on the driver's thread below
                failure.append(e)

        runner_thread = threading.Thread(target=run, name=f"beam-{label}", daemon=True)
        runner_thread.start()
        fs, folder = filesystem(results, {})
        with step_progress(label, len(items)) as bar:
            while runner_thread.is_alive():
                runner_thread.join(timeout=0.5)
                bar.update(_count_done(fs, folder) - bar.n)
                if self._workers is not None:
                    self._workers.check_alive()
            bar.update(_count_done(fs, folder) - bar.n)
        if failure:
            raise failure[0]
        out = []
        for n in range(len(items)):
            with fs.open(join(folder, f"{n}.pkl"), "rb") as f:
                out.append(pickle.load(f))
        fs.rm(folder, recursive=True)
        return out

    def _runner(self):
        if self.config.beam.runner == "FnApiRunner":
            from apache_beam.runners.portability.fn_api_runner import FnApiRunner
            return FnApiRunner(default_environment=self._workers.environment if self._workers else None)
        return self.config.beam.runner  # Beam resolves the name (FlinkRunner, DataflowRunner, ...)

    def _options(self):
        from apache_beam.options.pipeline_options import PipelineOptions

        options = dict(self.config.beam.options)
        if self.config.beam.runner == "FnApiRunner":
            options.setdefault("direct_num_workers", self.config.n_workers)
        return PipelineOptions.from_dictionary(options)


def _run_and_store(indexed_item, fn, results: str) -> None:
    """On a worker: run fn on one item, pickle its result to <results>/<n>.pkl (atomically)."""
    n, item = indexed_item
    result = fn(item)
    with open_atomic(join(results, f"{n}.pkl")) as f:
        pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)


def _count_done(fs, folder: str) -> int:
    try:
        return sum(1 for name in fs.ls(folder, detail=False) if name.endswith(".pkl"))
    except FileNotFoundError:
        return 0
