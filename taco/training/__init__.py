"""Training: the Trainer, its callbacks and reports, checkpoints, profiler and hardware."""
