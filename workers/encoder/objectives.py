"""Training objectives: contrastive (InfoNCE with in-batch negatives) and masked-language-model masking."""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # labels the MLM loss skips (transformers' convention)


def contrastive_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor | None = None,
                     temperature: float = 0.05) -> torch.Tensor:
    """InfoNCE with in-batch negatives (sentence-transformers' MultipleNegativesRankingLoss).

    anchor, positive: (batch, dim); negative: (batch, dim) hard negatives or None. Anchor i's
    candidates are every positive and every hard negative in the batch; the right one is positive i:
        loss = mean_i [ log sum_j exp(s_ij / t) - s_ii / t ],  s = cosine similarity.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    anchor = F.normalize(anchor.float(), dim=-1)
    candidates = positive if negative is None else torch.cat([positive, negative])  # (batch or 2 batch, dim)
    candidates = F.normalize(candidates.float(), dim=-1)
    similarities = anchor @ candidates.T  # (batch, candidates)
    return similarity_loss(similarities, temperature)


def similarity_loss(similarities: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy over rows of a (batch, candidates) similarity matrix whose diagonal is the right answer."""
    labels = torch.arange(similarities.shape[0], device=similarities.device)  # (batch,)
    return F.cross_entropy(similarities / temperature, labels)


def mask_tokens(input_ids: torch.Tensor, special_tokens_mask: torch.Tensor, *, mask_token_id: int, vocab_size: int,
                probability: float = 0.15, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: (batch, seq) ids -> (inputs, labels).

    Each non-special token is chosen with `probability`; of the chosen, 80 % become [MASK], 10 % a
    random token, 10 % stay. Labels hold the original id at chosen positions, IGNORE_INDEX elsewhere.
    """
    device = input_ids.device
    draw = torch.rand(input_ids.shape, generator=generator, device=device)  # (batch, seq)
    chosen = (draw < probability) & ~special_tokens_mask.bool()
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    action = torch.rand(input_ids.shape, generator=generator, device=device)
    inputs = input_ids.clone()
    inputs[chosen & (action < 0.8)] = mask_token_id
    randomised = chosen & (action >= 0.8) & (action < 0.9)
    inputs[randomised] = torch.randint(vocab_size, input_ids.shape, generator=generator, device=device)[randomised]
    return inputs, labels
