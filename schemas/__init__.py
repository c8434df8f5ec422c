"""Stage contracts (Arrow schemas), the IO layer, the versioned table store and the consumer API.

Nothing here imports Dask, Beam, Ray or torch: a consumer loads embeddings without the training stack.
"""
