"""word2vec and fastText: model tables, CPU (numba) and GPU (numba-cuda) kernels, the per-worker loop, training on Ray."""
