"""Encoder models: subword tokenizer, transformer encoder with pooling, contrastive and MLM training on
Ray Train, batch embedding on Ray, and semantic search over the published document tables.

Light modules (no Ray, no pydantic; usable where only torch/transformers/tokenizers/numpy/pyarrow exist,
e.g. benchmarks/encoder.py --device cuda): subword, pooling, objectives, model, loop, inference,
retrieval, pairs. Ray wiring: train (Ray Train), embed (Ray actors). search: the query side.
"""
