"""`ProfileReport`: time per stage, with `trainer.profiler=simple`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taco.metrics import Evaluation
from taco.training.callbacks.base import Callback

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer


class ProfileReport(Callback):
    """Time per stage (`trainer.profiler=simple`): printed, `profile/*` metrics, `profile.md`."""

    order = 90  # after the other reports, so their time is counted

    def on_test_end(self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation) -> None:
        profiler = trainer.profiler
        if not profiler.enabled:
            return
        table = profiler.table()
        trainer.logger.log_metrics(profiler.metrics())
        trainer.logger.log_text(table, "profile.md")
        print(f"\nTime per stage (trainer.profiler=simple):\n{table}")
