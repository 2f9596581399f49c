"""Augmentations for the pool's tests: light to import, since every worker process imports them."""

from __future__ import annotations

import time


def broken(image):
    raise ValueError("this augmentation always fails")


def slow(image):
    time.sleep(0.05)
    return {"image": image}


def fatal(image):
    """Kills the worker process that runs it (as the OOM killer would)."""
    import os

    os._exit(3)
