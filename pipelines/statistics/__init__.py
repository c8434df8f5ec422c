"""Corpus statistics: per-shard kernels, the engines that run them (Dask, Beam), and the steps that wire them."""
