"""Engines decide where per-shard work runs; they know nothing about what the work is.

An engine is a context manager with one method, `map(fn, items, label) -> list`, that runs a
picklable function over items (shards, buckets) on its workers and returns the results in
item order, with a progress bar labelled `label` and a log line when it is done (`step_progress`).
Statistics steps (pipelines/statistics/steps.py) are written against this seam only, so adding an
engine (Beam) adds wiring, not counting.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Callable, ContextManager, Iterator, Protocol, Sequence, TypeVar

from tqdm.auto import tqdm

from firth.pipelines.config import StatisticsConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Engine(Protocol):
    def map(self, fn: Callable[[T], R], items: Sequence[T], label: str) -> list[R]: ...


def open_engine(config: StatisticsConfig, warm_imports: Sequence[str] = ()) -> ContextManager[Engine]:
    """The configured engine. `warm_imports` names modules that long-lived worker processes import
    when they start (the caller's step functions), so the first step does not pay for them."""
    if config.engine == "dask":
        from firth.pipelines.statistics.engines.dask import DaskEngine
        return DaskEngine(config)
    if config.engine == "beam":
        from firth.pipelines.statistics.engines.beam import BeamEngine
        return BeamEngine(config, warm_imports)
    raise ValueError(f"statistics.engine: unknown engine {config.engine!r}")


@contextmanager
def step_progress(label: str, total: int) -> Iterator[tqdm]:
    """The progress bar of one step (drawn where tqdm draws: the `firth` command turns bars off
    off a terminal) and one INFO line when the step is done, so a piped log shows each step."""
    start = time.perf_counter()
    with tqdm(total=total, desc=label, unit="task", leave=False) as bar:
        yield bar
    log.info("statistics step %s: %d task(s) in %.1f s", label, total, time.perf_counter() - start)
