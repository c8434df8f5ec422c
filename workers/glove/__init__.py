"""GloVe: the model and its numba / torch updates (model.py), trained on Ray (train.py)."""
