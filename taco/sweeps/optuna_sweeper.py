"""`hydra/sweeper=taco_optuna` (`hparams_search=optuna`): Optuna 5 as a Hydra sweeper that prunes,
keeps every worker busy and survives being killed.

- The search space is Hydra's sweep syntax (`taco.sweeps.search_space`), checked whole before the
  first trial, with the job config at each bound and choice checked against the schema.
- Each trial is one job of the launcher. Its number goes to the job as
  `callbacks.optuna_pruning.trial`, and the job's `OptunaPruning` callback reports the validation
  metric each epoch and stops when the pruner says so (`taco.sweeps.pruning`).
- No batches: with the joblib launcher a worker asks for the next trial as soon as its last one
  ends or is pruned (`launch_as_ready`); other launchers get one job per call on `n_jobs`
  threads; the basic launcher runs one at a time in this process.
- The study lives in an RDB storage (`taco.sweeps.optuna_study`): the same command continues it
  up to `n_trials`, under the same MLflow parent run; a killed sweep's trials are failed by
  their stopped heartbeats and asked again.

Only Hydra, OmegaConf and the standard library load at module level: Hydra imports every plugin
for every command.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from taco.config import default_tracking_uri, resolved_config
from taco.errors import ConfigError, TacoError
from taco.schema import better, check_config
from taco.sweeps import optuna_study
from taco.sweeps.hydra_core import plugin_class, runs_in_this_process
from taco.sweeps.search_space import SearchSpace, search_space
from taco.tracking.lineage import PARENT_ENV

log = logging.getLogger(__name__)

TRIAL_OVERRIDE = "callbacks.optuna_pruning.trial"


class OptunaSweeper(Sweeper):
    """Hydra's sweeper interface; its settings: `conf/hydra/sweeper/taco_optuna.yaml`."""

    def __init__(
        self,
        sampler: Any = None,
        pruner: Any = None,
        direction: str = "maximize",
        storage: str | None = None,
        study_name: str = "taco",
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 0.0,
        params: dict | None = None,
        heartbeat_interval: int = optuna_study.HEARTBEAT_S,
        grace_period: int = optuna_study.GRACE_S,
    ) -> None:
        if direction not in ("maximize", "minimize"):
            raise ConfigError(
                f"hydra.sweeper.direction={direction!r}: expected maximize or minimize"
            )
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
            raise ConfigError(f"hydra.sweeper.n_trials={n_trials!r}: expected a number >= 1")
        if not 0.0 <= float(max_failure_rate) <= 1.0:
            raise ConfigError(
                f"hydra.sweeper.max_failure_rate={max_failure_rate}: expected a share in [0, 1]"
            )
        self.sampler_config, self.pruner_config = sampler, pruner
        self.direction, self.storage, self.study_name = direction, storage, str(study_name)
        self.n_trials, self.n_jobs = int(n_trials), max(1, int(n_jobs))
        self.max_failure_rate = float(max_failure_rate)
        self.params = params or {}
        if not 0 < int(heartbeat_interval) < int(grace_period):
            raise ConfigError(
                f"hydra.sweeper.grace_period={grace_period} must exceed heartbeat_interval="
                f"{heartbeat_interval} (> 0): a trial is stale after missing heartbeats"
            )
        self.heartbeat = (int(heartbeat_interval), int(grace_period))
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # ------------------------------------------------------------------ checks
    @staticmethod
    def storage_of(config: DictConfig) -> str:
        """The study's storage URL for this config: as set, or beside the MLflow store."""
        sweeper, logger = config.hydra.sweeper, config.get("logger") or {}
        uri = logger.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or ""
        if not uri:
            uri = default_tracking_uri()
        return optuna_study.storage_url(sweeper.get("storage"), str(uri))

    @classmethod
    def earlier_parent_run(cls, config: DictConfig) -> str | None:
        """The MLflow parent run of this search's study, when a run of it exists already: the
        sweep's parent callback continues that run instead of opening a new one."""
        sweeper = config.hydra.sweeper
        return optuna_study.earlier_parent(cls.storage_of(config), str(sweeper.study_name))

    @classmethod
    def check(cls, config: DictConfig, arguments: Sequence[str]) -> SearchSpace:
        """Everything a search can get wrong, before a trial or a run: the metric (a validation
        one: never tune on test), the space, and the job config at every bound and choice."""
        metric = str(config.get("optimized_metric", ""))
        if not metric.startswith("val/"):
            raise ConfigError(
                f"optimized_metric={metric}: a search is judged on validation (val/final/...), "
                "never on test, which would then no longer be a fair test"
            )
        sweeper = config.hydra.sweeper
        space = search_space(sweeper.get("params"), arguments, config)
        if not space.distributions:
            raise ConfigError(
                "hydra.sweeper.params: nothing to search; give at least one choice(...), "
                "range(...) or interval(...)"
            )
        pruning = OmegaConf.select(config, "callbacks.optuna_pruning", default=None)
        if pruning is not None:
            mode = better(str(pruning.get("monitor", "val/f1_macro")))
            want = "max" if str(sweeper.direction) == "maximize" else "min"
            if mode != want:
                raise ConfigError(
                    f"callbacks.optuna_pruning.monitor={pruning.monitor} is better "
                    f"{mode}imised, but hydra.sweeper.direction={sweeper.direction}: the pruner "
                    "would stop the best trials; make them agree"
                )
        _check_jobs(config, space)
        return space

    # ------------------------------------------------------------------ the search
    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None
        config = self.config
        space = self.check(config, arguments)
        url = self.storage_of(config)
        earlier = optuna_study.trials_in(url, self.study_name)
        sampler = self._sampler(space, earlier)
        pruner = _build(self.pruner_config)
        study = optuna_study.open_study(
            url, self.study_name, self.direction, sampler, pruner, self.heartbeat
        )
        parent = os.environ.get(PARENT_ENV)
        if parent and study.user_attrs.get(optuna_study.PARENT_ATTR) != parent:
            study.set_user_attr(optuna_study.PARENT_ATTR, parent)
        import optuna

        optuna.storages.fail_stale_trials(study)  # a killed sweep's trials: FAIL, asked again
        done = optuna_study.finished(study)
        log.info(
            "study %r in %s: %d of %d trials done, %s",
            self.study_name,
            url,
            done,
            self.n_trials,
            "nothing left to do" if done >= self.n_trials else "continuing",
        )
        n_trials = self.n_trials
        if isinstance(sampler, optuna.samplers.GridSampler):  # each point once, no more
            points = math.prod(len(v) for v in space.grid().values())
            if points < n_trials:
                log.info("the grid has %d points: %d trials, not %d", points, points, n_trials)
            n_trials = min(n_trials, points)
        loop = TrialLoop(study, space, n_trials, self.max_failure_rate, config, self.heartbeat[0])
        started = time.time()
        try:
            timeline = self._run(loop)
        finally:
            loop.close()
        from taco.sweeps.optuna_results import write_results

        sweep_dir = Path(str(config.hydra.sweep.dir))
        write_results(study, sweep_dir, started, timeline, self._workers())
        if loop.too_many_failures():
            raise TacoError(
                f"{loop.failed} of {self.n_trials} trials failed, more than "
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate}: the search stopped "
                "(the failed runs say why; the same command continues the study)"
            )
        return loop.results

    def _run(self, loop: TrialLoop) -> list[tuple[int, int, float, float]]:
        """Trials until `n_trials` are done, each worker starting one as soon as it is free;
        trials running elsewhere (another sweep, or a dead one not yet stale) are waited for."""
        timeline: list[tuple[int, int, float, float]] = []
        while True:
            if hasattr(self.launcher, "launch_as_ready"):
                timeline += self.launcher.launch_as_ready(loop.next_job, loop.on_result)
            elif runs_in_this_process(self.launcher):
                timeline += self._one_at_a_time(loop)
            else:
                timeline += self._threads(loop)
            if not loop.waiting_elsewhere():
                return timeline
            time.sleep(self.heartbeat[0])

    def _one_at_a_time(self, loop: TrialLoop) -> list[tuple[int, int, float, float]]:
        timeline = []
        while (spec := loop.next_job()) is not None:
            start = time.time()
            (result,) = self.launcher.launch([spec[1]], initial_job_idx=spec[0])
            timeline.append((0, spec[0], start, time.time()))
            loop.on_result(spec[0], result)
        return timeline

    def _threads(self, loop: TrialLoop) -> list[tuple[int, int, float, float]]:
        """A launcher with batches only (Ray, SLURM): one job per `launch` call, on `n_jobs`
        threads, so a free worker does not wait for the others."""
        timeline: list[tuple[int, int, float, float]] = []
        free, running = list(range(self.n_jobs)), {}
        with ThreadPoolExecutor(self.n_jobs) as pool:
            while True:
                while free and (spec := loop.next_job()) is not None:
                    worker = free.pop(0)
                    start = time.time()
                    future = pool.submit(self.launcher.launch, [spec[1]], spec[0])
                    running[future] = (worker, spec[0], start)
                if not running:
                    return timeline
                ended, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in ended:
                    worker, num, start = running.pop(future)
                    free = sorted([*free, worker])
                    timeline.append((worker, num, start, time.time()))
                    loop.on_result(num, future.result()[0])

    def _workers(self) -> int:
        if hasattr(self.launcher, "workers"):
            return int(self.launcher.workers())
        return 1 if runs_in_this_process(self.launcher) else self.n_jobs

    def _sampler(self, space: SearchSpace, earlier: int) -> Any:
        """The configured sampler; the grid sampler gets the space's grid. A continued study's
        sampler is seeded `seed + trials so far`: seeded as before, it would draw the first
        run's random trials again."""
        from optuna.samplers import GridSampler

        node = self.sampler_config
        extra: dict[str, Any] = {}
        if node is not None and node.get("seed") is not None and earlier:
            extra["seed"] = int(node.seed) + earlier
        if node is not None and issubclass(plugin_class(node) or object, GridSampler):
            extra["search_space"] = space.grid()
        return _build(node, **extra)


class TrialLoop:
    """Asks Optuna for trials and tells it their ends, from any worker thread."""

    def __init__(
        self,
        study: Any,
        space: SearchSpace,
        n_trials: int,
        max_failure_rate: float,
        config: Any,
        heartbeat_s: float = optuna_study.HEARTBEAT_S,
    ) -> None:
        self.study, self.space, self.n_trials = study, space, n_trials
        self.max_failures = math.floor(max_failure_rate * n_trials)
        self.prunes = OmegaConf.select(config, "callbacks.optuna_pruning", default=None) is not None
        self.lock = threading.Lock()
        self.running: dict[int, Any] = {}  # job number (= trial number) -> trial
        self.failed = 0
        self.exhausted = False  # a grid sampler's every point has run
        self.results: list[Any] = []
        self.heartbeat = optuna_study.Heartbeat(study._storage, heartbeat_s)

    def _others_running(self) -> int:
        from optuna.trial import TrialState

        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return len([t for t in running if t.number not in self.running])

    def next_job(self) -> tuple[int, list[str]] | None:
        """The next trial's (number, overrides), or None when the trials done, running here and
        running elsewhere make `n_trials` (or too many failed)."""
        with self.lock:
            if self.too_many_failures() or self.exhausted:
                return None
            busy = optuna_study.finished(self.study) + len(self.running) + self._others_running()
            if busy >= self.n_trials:
                return None
            trial = self.study.ask(self.space.distributions)
            self.heartbeat.add(trial._trial_id)
            self.running[trial.number] = trial
            overrides = self.space.overrides(trial.params)
            if self.prunes:
                overrides.append(f"{TRIAL_OVERRIDE}={trial.number}")
            return trial.number, overrides

    def on_result(self, num: int, result: Any) -> None:
        """A job ended: the trial is told COMPLETE (its value), PRUNED (its callback said so)
        or FAIL (no value: the job failed or was killed)."""
        from optuna.trial import TrialState

        from taco.sweeps.pruning import PRUNED_ATTR

        with self.lock:
            trial = self.running.pop(num)
            self.heartbeat.remove(trial._trial_id)
            self.results.append(result)
            value = _value(result)
            attrs = self.study._storage.get_trial(trial._trial_id).user_attrs
            if attrs.get(PRUNED_ATTR):
                self._tell(trial, state=TrialState.PRUNED)
                state = f"pruned after epoch {attrs[PRUNED_ATTR]}"
            elif optuna_study.is_nan(value):
                self.failed += 1
                self._tell(trial, state=TrialState.FAIL)
                state = "failed"
            else:
                self._tell(trial, float(value))
                state = f"{float(value):.4f}"
            log.info("trial %d: %s %s", num, state, trial.params)

    def _tell(self, trial: Any, *values: float, **state: Any) -> None:
        """Optuna's tell; a grid sampler that has run every point asks the study to stop
        (`Study.stop`, which only `Study.optimize` takes): no more trials are asked."""
        try:
            self.study.tell(trial, *values, **state)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise
            self.exhausted = True  # the trial's state is stored before the sampler is asked

    def too_many_failures(self) -> bool:
        return self.failed > self.max_failures

    def waiting_elsewhere(self) -> bool:
        """Trials short of `n_trials` while another process holds running ones: a dead sweep's
        are failed once their heartbeat is stale, and asked again here."""
        import optuna

        if self.too_many_failures() or self.exhausted:
            return False
        if optuna_study.finished(self.study) >= self.n_trials:
            return False
        optuna.storages.fail_stale_trials(self.study)
        others = self._others_running()
        if others:
            log.info("waiting for %d trial(s) running elsewhere (or a dead sweep's)", others)
        return bool(others) or optuna_study.count(self.study, "WAITING") > 0

    def close(self) -> None:
        """Interrupted or done: trials still running here are failed, and asked again by the
        next run of the same command."""
        from optuna.trial import TrialState

        self.heartbeat.close()
        for trial in list(self.running.values()):
            try:
                self.study.tell(trial, state=TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            except Exception as exc:  # the storage itself went away: heartbeats will tell
                log.warning("could not fail trial %d: %s", trial.number, exc)
        self.running.clear()


def _value(result: Any) -> Any:
    try:
        return result.return_value  # raises a failed job's exception
    except Exception:
        return None


def _build(node: Any, **kwargs: Any) -> Any:
    if node is None or not node.get("_target_"):
        return None

    try:
        return instantiate(node, **kwargs)
    except Exception as exc:
        raise ConfigError(f"hydra.sweeper: {node.get('_target_')} cannot be built: {exc}") from None


def _check_jobs(config: DictConfig, space: SearchSpace, limit: int = 200) -> None:
    """The job config with each parameter at each bound (an interval) or value (a choice), the
    others at their first: a value the schema refuses fails now, naming the parameter."""
    if not GlobalHydra.instance().is_initialized() or "trainer" not in config:
        return  # taco-train's schema; another Hydra app's config is its own business
    loader = GlobalHydra.instance().config_loader()
    first = {name: _extremes(d)[0] for name, d in space.distributions.items()}
    tried = [(name, value) for name, d in space.distributions.items() for value in _extremes(d)]
    for name, value in tried[:limit]:
        params = {**first, name: value}
        overrides = [*space.overrides(params), *config.hydra.overrides.task]
        overrides = [o for o in overrides if not _is_sweep(o)]
        try:
            job = loader.load_sweep_config(config, overrides)
            with open_dict(job):
                del job["hydra"]
            check_config(resolved_config(job))
        except ConfigError as exc:
            raise ConfigError(
                f"hydra.sweeper.params.{name}: a trial may take {value}, and then {exc}"
            ) from None
        except Exception as exc:  # not a value the schema refuses: the trial itself will say
            log.debug("search check skipped %s: %s", params, exc)


def _extremes(dist: Any) -> list[Any]:
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    return [dist.low, dist.high]


def _is_sweep(override: str) -> bool:
    try:
        (parsed,) = OverridesParser.create().parse_overrides([override])
    except Exception:
        return False
    return parsed.is_sweep_override()
