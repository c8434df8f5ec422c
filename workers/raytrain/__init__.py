"""The one Ray Train harness: start Ray, check GPUs, synchronise, checkpoint, restore, forward progress."""
