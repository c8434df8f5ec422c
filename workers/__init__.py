"""Training: one folder per model family, one Ray Train harness (raytrain/)."""
