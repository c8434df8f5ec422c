"""Batched embedding in one process (no Ray): the kernel that Ray actors, search and the benchmark share.

Texts are tokenised once for the whole call (the fast tokenizer batches in Rust), then sorted by
their token count and cut into batches, so each batch pads only to its own longest text; vectors
are put back in input order. Chunk rows split a long document into windows of max_length tokens
that overlap by `stride` tokens, each with the text span it covers.
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pyarrow as pa
import torch

from firth.workers.encoder.model import Encoder


def autocast(device: torch.device | str):
    """bf16 autocast on CUDA (where the tensor cores are), nothing on CPU."""
    device = torch.device(device)
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


@torch.inference_mode()
def embed_token_ids(encoder: Encoder, token_ids: list[list[int]], *, batch_size: int = 64,
                    device: torch.device | str = "cpu", precision: str = "auto") -> np.ndarray:
    """(n, dim) float32 vectors of already tokenised texts ([CLS] ... [SEP] each), in input order.

    precision "auto": bf16 autocast on CUDA, float32 on CPU; "float32": float32 everywhere.
    """
    encoder.eval()
    n = len(token_ids)
    vectors = np.empty((n, encoder.dim), dtype=np.float32)
    if n == 0:
        return vectors
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=n)  # (n,)
    order = np.argsort(-lengths, kind="stable")  # longest first: the first batch shows peak memory at once
    pad_id = encoder.tokenizer.pad_token_id or 0
    context = autocast(device) if precision == "auto" else nullcontext()
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]  # (b,)
        width = int(lengths[rows[0]])
        ids = np.full((len(rows), width), pad_id, dtype=np.int64)  # (b, width)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for slot, row in enumerate(rows):
            ids[slot, :lengths[row]] = token_ids[row]
            mask[slot, :lengths[row]] = 1
        with context:
            out = encoder(torch.from_numpy(ids).to(device, non_blocking=True),
                          torch.from_numpy(mask).to(device, non_blocking=True))  # (b, dim)
        vectors[rows] = out.float().cpu().numpy()
    return vectors


def embed_texts(encoder: Encoder, texts: list[str], *, batch_size: int = 64, device: torch.device | str = "cpu",
                precision: str = "auto") -> np.ndarray:
    """(len(texts), dim) float32, each text truncated to the encoder's max_length tokens."""
    encoded = encoder.tokenizer(list(texts), truncation=True, max_length=encoder.spec.max_length,
                                return_attention_mask=False, return_token_type_ids=False)
    return embed_token_ids(encoder, encoded["input_ids"], batch_size=batch_size, device=device, precision=precision)


def document_rows(encoder: Encoder, doc_ids: list[str], texts: list[str], *, chunks: bool = False, stride: int = 32,
                  batch_size: int = 64, device: torch.device | str = "cpu", keep_text: bool = True) -> pa.RecordBatch:
    """Rows of firth.schemas.tables.document_embedding_schema(dim) for these documents.

    chunks False: one row per document (chunk 0, its first max_length tokens), text = the document.
    chunks True: one row per window of max_length tokens, windows overlapping by `stride` tokens;
    text = the span of the document the window covers.
    """
    from firth.schemas.tables import document_embedding_schema  # pyarrow only

    tokenizer, max_length = encoder.tokenizer, encoder.spec.max_length
    if not chunks:
        encoded = tokenizer(list(texts), truncation=True, max_length=max_length, return_attention_mask=False,
                            return_token_type_ids=False)
        row_ids, row_chunks, row_texts = list(doc_ids), [0] * len(doc_ids), list(texts)
    else:
        if not 0 <= stride < max_length - 2:
            raise ValueError(f"model.chunk_stride {stride} must be >= 0 and below max_length - 2 ({max_length - 2})")
        encoded = tokenizer(list(texts), truncation=True, max_length=max_length, stride=stride,
                            return_overflowing_tokens=True, return_offsets_mapping=True,
                            return_attention_mask=False, return_token_type_ids=False)
        doc_of_row = encoded["overflow_to_sample_mapping"]  # (rows,) index into texts
        row_ids, row_chunks, row_texts, seen = [], [], [], {}
        for row, doc in enumerate(doc_of_row):
            spans = [(s, e) for s, e in encoded["offset_mapping"][row] if e > s]  # special tokens are (0, 0)
            row_ids.append(doc_ids[doc])
            row_chunks.append(seen.get(doc, 0))
            seen[doc] = row_chunks[-1] + 1
            row_texts.append(texts[doc][spans[0][0]:spans[-1][1]] if spans else "")
    vectors = embed_token_ids(encoder, encoded["input_ids"], batch_size=batch_size, device=device)  # (rows, dim)
    dim = vectors.shape[1]
    return pa.RecordBatch.from_arrays(
        [pa.array(row_ids, pa.string()), pa.array(row_chunks, pa.int32()),
         pa.array(row_texts if keep_text else [None] * len(row_ids), pa.string()),
         pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)],
        schema=document_embedding_schema(dim))
