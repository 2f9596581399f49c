"""Data path: annotations -> labels -> split -> decode cache -> batches."""
