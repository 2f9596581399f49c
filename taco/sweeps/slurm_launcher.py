"""`hydra/launcher=slurm`: hydra-submitit-launcher's SLURM launcher, whose job resumes from its
own checkpoint when SLURM preempts it or its time limit comes.

SLURM warns a job before either with a signal (submitit asks for USR2 `signal_delay_s` ahead).
Here that signal stops training as Ctrl-C does: the job saves its checkpoint and closes its run
KILLED. Then submitit's checkpointing takes over: it asks this launcher what to run again
(`checkpoint`: the same job with `ckpt_path=last`), requeues the job (`scontrol requeue`), and the
requeued job finds its checkpoint in its own folder and continues the same MLflow run to the
numbers an uninterrupted job ends with. Hydra's plugin scan imports this module for every
command (through `hydra_plugins/taco_launcher/slurm_launcher.py`); submitit loads only when a
sweep launches.
"""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

from taco.errors import ConfigError, cli_errors
from taco.signals import stop_then
from taco.sweeps.parent import fail_open_parents

RESUME = "ckpt_path=last"


class ResumingSlurmLauncher(SlurmLauncher):
    """SLURM jobs that save, requeue and resume on preemption or at their time limit."""

    def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
        """sbatch refusing the jobs (a partition, memory or CPUs the cluster does not have) is
        one line naming the settings, not submitit's traceback."""
        from submitit.core.utils import FailedJobError

        try:
            return super().launch(job_overrides, initial_job_idx)
        except FailedJobError as exc:
            refusal = " ".join(line for line in str(exc).splitlines() if "error" in line)
            message = (
                f"sbatch refused the sweep's jobs ({refusal or exc}): check "
                "hydra.launcher.partition, mem_gb, cpus_per_task, gpus_per_node and "
                "timeout_min against the cluster's (sinfo)"
            )
            fail_open_parents(message)  # the sweep's parent run: FAILED, saying why
            with cli_errors("taco-train"):
                raise ConfigError(message) from None

    def __call__(self, sweep_overrides: list[str], *args: Any) -> Any:
        """In the job's process, after submitit has set its signal handlers."""
        from submitit.core.job_environment import JobEnvironment

        # the warning stops the job; then submitit's own handler (checkpoint_and_try_requeue)
        # calls `checkpoint`, requeues and exits
        with stop_then(JobEnvironment._usr_sig(), None):
            return super().__call__(sweep_overrides, *args)

    def checkpoint(self, sweep_overrides: list[str], *args: Any, **kwargs: Any) -> Any:
        """What submitit runs when the job is requeued: the same job, resumed."""
        again = [o for o in sweep_overrides if not o.startswith("ckpt_path=")] + [RESUME]
        return super().checkpoint(again, *args, **kwargs)
