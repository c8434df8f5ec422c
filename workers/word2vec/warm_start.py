"""Continued training: start word2vec / fastText from a published version (`model.init_from`).

The new run's vocabulary comes from its own statistics (the new shards), so ids differ from the
published table's: rows are matched by token. Words of the published table start from their
published vectors; new words start fresh (init_state's uniform rows). For fastText the published
vector of a word is the mean of its own and its n-gram rows, and it seeds the word's own row; the
n-gram buckets start fresh. Output rows (syn1neg / syn1) are not published, so they start at 0:
the first epoch re-learns them around the warm input vectors.
"""
from __future__ import annotations

import numpy as np

from firth.pipelines.config import JobConfig
from firth.schemas.store import TableStore


def warm_start_vectors(config: JobConfig, tokens: list[str]) -> np.ndarray:
    """(V, D) float32 initial input rows for `tokens` (this run's vocabulary); NaN rows: not published."""
    store = TableStore(config.store.uri, config.store.storage_options)
    name, version = store.resolve(config.model.init_from)  # NAME, NAME@VERSION, @ALIAS or @TIMESTAMP
    table = store.read(name, version)
    vector = table.column("vector").combine_chunks()
    dim = vector.type.list_size
    if dim != config.model.dim:
        raise ValueError(f"model.init_from: {config.model.init_from} has dim {dim}, but model.dim is "
                         f"{config.model.dim}; set model.dim: {dim} to continue training it")
    published = vector.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)  # (V_old, D)
    row_of = {token: row for row, token in enumerate(table.column("token").to_pylist())}
    initial = np.full((len(tokens), dim), np.nan, dtype=np.float32)
    rows = np.array([row_of.get(t, -1) for t in tokens])
    known = rows >= 0
    initial[known] = published[rows[known]]
    return initial
