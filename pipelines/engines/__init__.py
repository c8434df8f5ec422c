"""Engines decide where per-shard work runs; they know nothing about what the work is.

An engine is a context manager with one method, `map(fn, items, label) -> list`, that runs a
picklable function over items (shards, buckets) on its workers and returns the results in
item order, with a progress bar labelled `label`. Statistics steps (pipelines/statistics.py)
are written against this seam only, so adding an engine (Beam) adds wiring, not counting.
"""
from __future__ import annotations

from typing import Callable, ContextManager, Protocol, Sequence, TypeVar

from pipelines.config import StatisticsConfig

T = TypeVar("T")
R = TypeVar("R")


class Engine(Protocol):
    def map(self, fn: Callable[[T], R], items: Sequence[T], label: str) -> list[R]: ...


def open_engine(config: StatisticsConfig) -> ContextManager[Engine]:
    if config.engine == "dask":
        from pipelines.engines.dask import DaskEngine
        return DaskEngine(config)
    if config.engine == "beam":
        from pipelines.engines.beam import BeamEngine
        return BeamEngine(config)
    raise ValueError(f"statistics.engine: unknown engine {config.engine!r}")
