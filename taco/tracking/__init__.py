"""Tracking: MLflow logging and stores, a run's lineage in a sweep, logged models."""
