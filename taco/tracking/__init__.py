"""Tracking: the MLflow run logger, the sweep's parent run, and reading runs back (comparison)."""
