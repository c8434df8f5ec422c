"""Count models: PPMI-SVD and LSA from the statistics tables."""
