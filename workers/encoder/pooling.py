"""Token states → one vector per text: [CLS] or mask-aware mean pooling, optional L2 normalisation."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Pooling = Literal["mean", "cls"]


def mean_pool(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the states of real tokens only: (batch, seq, dim), (batch, seq) -> (batch, dim).

    Padding positions (mask 0) add nothing to the sum and nothing to the count.
    """
    mask = attention_mask.unsqueeze(-1).to(token_states.dtype)  # (batch, seq, 1)
    summed = (token_states * mask).sum(dim=1)  # (batch, dim)
    counts = mask.sum(dim=1).clamp(min=1)  # (batch, 1); an all-padding row gives zeros, not NaN
    return summed / counts


def cls_pool(token_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The state at position 0 ([CLS]): (batch, seq, dim) -> (batch, dim)."""
    return token_states[:, 0]


def pool(token_states: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling, normalize: bool) -> torch.Tensor:
    if pooling == "mean":
        vectors = mean_pool(token_states, attention_mask)
    elif pooling == "cls":
        vectors = cls_pool(token_states)
    else:
        raise ValueError(f"pooling {pooling!r}: use 'mean' or 'cls'")
    return F.normalize(vectors, dim=-1) if normalize else vectors
