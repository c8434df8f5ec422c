"""A batch of documents as flat arrays: values (n,) and offsets (n_docs + 1,), where document d
is values[offsets[d]:offsets[d + 1]] (the tokenizer's output shape)."""
from __future__ import annotations

import numpy as np


def checked_offsets(offsets, n_values: int, where: str) -> np.ndarray:
    """offsets as int64, or a ValueError naming `where` unless they run non-decreasing from 0 to n_values."""
    offsets = np.asarray(offsets)
    if (offsets.ndim != 1 or len(offsets) < 1 or not np.issubdtype(offsets.dtype, np.integer)
            or offsets[0] != 0 or offsets[-1] != n_values or np.any(np.diff(offsets) < 0)):
        raise ValueError(f"{where}: offsets must be integers running non-decreasing from 0 to the number of "
                         f"values ({n_values}), one more than the documents; got {offsets[:5]}...{offsets[-3:]}")
    return offsets.astype(np.int64, copy=False)


def drop_out_of_vocabulary(ids: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids without the -1 entries, offsets into them): windows and term counts then span over OOV tokens."""
    keep = ids >= 0
    if keep.all():
        return ids, offsets
    kept_before = np.concatenate([[0], np.cumsum(keep)])  # (n + 1,) kept ids before each position
    return ids[keep], kept_before[offsets]
