"""word2vec and fastText: model tables, CPU (numba) and torch kernels, the per-worker loop, training on Ray."""
