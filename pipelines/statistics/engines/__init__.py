"""Engines decide where per-shard work runs; they know nothing about what the work is.

An engine is a context manager with one method, `map(fn, items, label) -> list`, that runs a
picklable function over items (shards, buckets) on its workers and returns the results in
item order, with a progress bar labelled `label`. Statistics steps (pipelines/statistics/steps.py)
are written against this seam only, so adding an engine (Beam) adds wiring, not counting.
"""
from __future__ import annotations

from typing import Callable, ContextManager, Protocol, Sequence, TypeVar

from firth.pipelines.config import StatisticsConfig

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
