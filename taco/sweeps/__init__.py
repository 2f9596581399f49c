"""Sweeps: the parent run of a multirun, a process per job, and a re-run sweep's jobs."""
