"""Which worker module trains which `model:` kind, and what every trainer hands back to the job.

`firth.pipelines.job` calls `train(config, statistics, ...)`; the model's module is imported only
then, so Ray and torch load only when training starts. A trainer is a module-level function

    train(config: JobConfig, statistics: StatisticsSummary, *, checkpoint_uri: str,
          fault_injection: str | None) -> Trained

Word models return one vector per vocabulary id, which the job publishes beside the
vocabulary; document models (encoders) return the finished document table.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from os import PathLike
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from firth.pipelines.config import JobConfig
    from firth.schemas.statistics import StatisticsSummary

# model kind (config `model.model`) -> "module:function"
TRAINERS = {
    "glove": "firth.workers.glove.train:train",
    "ppmi_svd": "firth.workers.count.train:train_ppmi_svd",
    "lsa": "firth.workers.count.train:train_lsa",
    "word2vec": "firth.workers.word2vec.train:train",
    "fasttext": "firth.workers.word2vec.train:train",
    "encoder": "firth.workers.encoder.train:train",
}


@dataclass
class Trained:
    vectors: np.ndarray | None = None  # (V, dim) float32, row = vocabulary id (word models)
    table: pa.Table | pa.RecordBatchReader | None = None  # a finished document table (document models), or a stream of it
    epoch_losses: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)  # the model's own (e.g. retrieval); merged with evaluation's
    artifacts: dict[str, bytes | str | PathLike] = field(default_factory=dict)  # published with the version
    metadata: dict = field(default_factory=dict)  # extra lineage, e.g. how to use the artifacts
    workers: list[dict] = field(default_factory=list)  # where the Ray Train ranks ran (harness.placement)


def train(config: JobConfig, statistics: StatisticsSummary | None, *, checkpoint_uri: str,
          fault_injection: str | None = None) -> Trained:
    kind = config.model.model
    module_name, function_name = TRAINERS[kind].split(":")
    trainer = getattr(importlib.import_module(module_name), function_name)
    return trainer(config, statistics, checkpoint_uri=checkpoint_uri, fault_injection=fault_injection)
