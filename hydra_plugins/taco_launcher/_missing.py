"""A launcher that stands in for one whose plugin is not installed: choosing it is one line that
says what to install (`_`: Hydra's plugin scan does not import this module by itself)."""

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher


class MissingLauncher(Launcher):
    needs = ""  # the refusal: "hydra/launcher=X needs PACKAGE: run `make setup-X`"

    @classmethod
    def check_settings(cls, settings: Any) -> None:
        """Asked before any job starts (`taco.sweeps.plan.check_launcher`)."""
        from taco.errors import ConfigError

        raise ConfigError(cls.needs)

    def __init__(self, **settings: Any) -> None:
        self.check_settings(settings)

    def setup(self, **kwargs: Any) -> None:  # never reached: Hydra's scan needs a whole class
        raise NotImplementedError

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        raise NotImplementedError
