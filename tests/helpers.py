"""User callbacks for tests, instantiated by `_target_` like any user's own callback."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from taco.training.callbacks import Callback


def script(name: str) -> str:
    """The path of console script `name` in this environment (for tests that start it fresh)."""
    return os.path.join(os.path.dirname(sys.executable), name)


class InterruptAtEpoch(Callback):
    """Ctrl-C at the start of `epoch` (0-based): the run stops as an interrupted job would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, classifier, epoch: int) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"test interrupt at epoch {epoch + 1}")


class RecordHooks(Callback):
    """Remembers which hooks ran, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_fit_start(self, trainer, classifier) -> None:
        self.calls.append("fit_start")

    def on_train_epoch_start(self, trainer, classifier, epoch: int) -> None:
        self.calls.append(f"epoch_start:{epoch}")

    def on_train_batch_end(self, trainer, classifier, batch: int, logs: dict) -> None:
        self.calls.append("batch")

    def on_train_epoch_end(self, trainer, classifier, epoch: int) -> None:
        self.calls.append(f"epoch_end:{epoch}:{sorted(trainer.callback_metrics)}")

    def on_fit_end(self, trainer, classifier) -> None:
        self.calls.append("fit_end")


def sigterm_once_training(cmd: list[str], marker: str = "epoch 2/", wait: float = 240) -> int:
    """Start `cmd`, send SIGTERM once its output shows `marker` (training under way), return
    its exit code: how a scheduler or `kill` stops a job."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + wait
    for line in proc.stdout:
        if marker in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    return proc.returncode


class SigkillAtEpoch(Callback):
    """The job whose `seed` is `victim` dies by SIGKILL at the start of `epoch` (0-based), as
    the OOM killer or `kill -9` ends a worker; the other jobs of the sweep are untouched."""

    def __init__(self, epoch: int, seed: int, victim: int) -> None:
        self.epoch, self.seed, self.victim = epoch, seed, victim

    def on_train_epoch_start(self, trainer, classifier, epoch: int) -> None:
        import os
        import signal

        if epoch == self.epoch and self.seed == self.victim:
            os.kill(os.getpid(), signal.SIGKILL)


class HoldAtEpoch(Callback):
    """The job whose `seed` is `victim` holds at the start of `epoch` (0-based) for up to
    `seconds`, after writing its SLURM job id into `marker`, so that a scheduler's signal finds
    it training; once `marker` exists (the same job, requeued) it does not hold again."""

    def __init__(self, epoch: int, seed: int, victim: int, marker: str, seconds: float = 120):
        self.epoch, self.seed, self.victim = epoch, seed, victim
        self.marker, self.seconds = Path(marker), seconds

    def on_train_epoch_start(self, trainer, classifier, epoch: int) -> None:
        if epoch != self.epoch or self.seed != self.victim or self.marker.exists():
            return
        self.marker.write_text(os.environ.get("SLURM_JOB_ID", str(os.getpid())))
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            time.sleep(0.1)


class RecordBatchLogs(Callback):
    """Keeps what each `on_train_batch_end` was handed, and its loss as read (class-wide, so a
    test reads it after `train` built the callback from the config)."""

    seen: list[tuple[str, float]] = []

    def on_train_batch_end(self, trainer, classifier, batch: int, logs) -> None:
        RecordBatchLogs.seen.append((type(logs).__name__, logs["loss"]))
