"""A search in MLflow, as docs/tracking-schema.md lays it out: a parent run, a nested run per trial.

Tune calls its callbacks in the driver, so everything is written from one process through one
client: the default SQLite store (``sqlite:///mlflow.db`` in the working directory, which
``mlflow ui`` opens with no flags) then has a single writer however many trials run at once.
Tracking never stops a search: a failure is reported in one line and the search goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import ray.cloudpickle
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from ray.tune import Callback

from search.provenance import code_version, reachable, tracking_server
from search.searcher import STUDY_FILE
from search.settings import SearchSettings
from search.space import Space
from trainables.fates import FAILED, RUNNING, is_number, trial_fate

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a trial logs each epoch, with step=epoch; everything else in a result is Ray's bookkeeping.
METRICS = (
    "epochs_done",
    "horizon_epochs",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "epoch_time_s",
    "time_total_s",
)


class MlflowTracker(Callback):
    """Logs a search to MLflow from the driver: construct it there and pass it in Tune's callbacks.

    ``tracking_uri`` None is MLflow's own default (``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``);
    ``experiment`` None is the task's name. A search run again on the same ``experiment_dir``
    (``--resume``) finds its parent and trial runs again by their tags instead of adding new ones.
    """

    def __init__(
        self,
        space: Space,
        settings: SearchSettings,
        experiment_dir: Path,
        *,
        tracking_uri: str | None,
        experiment: str | None,
        command: str,
        quick: bool,
    ) -> None:
        self.space, self.settings = space, settings
        self.search = experiment_dir.name
        self.study = str((Path(experiment_dir) / STUDY_FILE).resolve())
        self.tracking_uri = tracking_uri
        self.experiment = experiment or space.task.name
        self.command, self.quick = command, quick
        self._reset()

    def _reset(self) -> None:
        self._client: MlflowClient | None = None
        self._code: str | None = None
        self._experiment_id: str | None = None
        self._parent_id: str | None = None
        self._runs: dict[str, str] = {}  # trial id -> run id
        self._open: set[str] = set()  # trial ids whose run is RUNNING
        self._last_step: dict[str, int] = {}  # trial id -> last epoch logged
        self._off: str | None = None  # why tracking stopped, once it has

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks with the tuner for --resume: no live client in the pickle, and a
        # restored tracker finds its runs again in MLflow rather than trusting stale ids.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # Tune's callbacks

    def setup(self, **info: Any) -> None:
        self._try("opening the search's run", self._open_parent)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._try(f"starting trial {trial.trial_id}", self._start_trial, trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        what = f"logging trial {trial.trial_id} epoch {step}"
        self._try(what, self._log_epoch, trial.trial_id, step, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # A trial stopped before it ran (the search's time budget ran out) has no open run to end.
        if trial.trial_id in self._open:
            fate = trial_fate(trial.last_result, error=False, budget_s=self.settings.stopper_budget_s)
            self._try(f"ending trial {trial.trial_id}'s run", self._end_trial, trial.trial_id, fate)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id not in self._open:  # it failed before it started: still a trial of the search
            self._try(f"starting trial {trial.trial_id}", self._start_trial, trial)
        error = _first_error_line(trial)
        self._try(f"ending trial {trial.trial_id}'s run", self._end_trial, trial.trial_id, FAILED, error)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Trials still running when the search stops (Ctrl-C, a crash) keep fate `running`;
        # --resume reopens their runs.
        for trial_id in sorted(self._open):
            self._try(f"closing trial {trial_id}'s run", self._kill_trial, trial_id)
        self._open.clear()

    # The search's end, called by search/run.py

    def finish(self, best: dict[str, Any], files: Sequence[Path], *, interrupted: bool = False) -> None:
        """Log ``best_<metric>`` and ``files`` (a folder goes under its own name) on the search's run,
        then end it: FINISHED, or KILLED if the search was ``interrupted`` or left a trial unended.

        Any tracker of the search can finish it (on --resume, Tune runs the one it unpickled):
        the runs are found by their tags, and unended trials by their fate, still `running`.
        """
        self._try("finishing the search's run", self._finish, best, files, interrupted)

    def _finish(self, best: dict[str, Any], files: Sequence[Path], interrupted: bool) -> None:
        parent = self._open_parent()
        if parent is None:
            return
        value = (best or {}).get(self.space.metric)
        if is_number(value):
            metric = Metric(f"best_{self.space.metric}", float(value), _now_ms(), 0)
            self.client.log_batch(parent, metrics=[metric])
        for path in map(Path, files):
            if path.is_dir():
                self.client.log_artifacts(parent, str(path), artifact_path=path.name)
            elif path.is_file():
                self.client.log_artifact(parent, str(path))
        # Ctrl-C leaves Tune's trials TERMINATED, as if done: their fate tells them apart.
        unended = self.client.search_runs(
            [self._experiment_id],
            f"tags.`mlflow.parentRunId` = {_quote(parent)} AND tags.`hpsearch.fate` = '{RUNNING}'",
            max_results=1,
        )
        self.client.set_terminated(parent, status="KILLED" if interrupted or unended else "FINISHED")

    # Runs

    def _open_parent(self) -> str | None:
        if self._parent_id is not None or self._off:
            return self._parent_id
        server = self._server()
        if server and not reachable(server):
            # MLflow retries a dead server for minutes per call: the search must not wait on it.
            self._turn_off(f"no MLflow server answers at {server}")
            return None
        client = self.client
        self._code = code_version()
        self._experiment_id = self._get_or_create_experiment()
        query = (
            f"tags.`hpsearch.role` = 'search' AND tags.`hpsearch.search` = {_quote(self.search)}"
            f" AND tags.`hpsearch.study` = {_quote(self.study)}"
        )
        found = client.search_runs([self._experiment_id], query, max_results=1)
        if found:
            self._parent_id = found[0].info.run_id
            client.update_run(self._parent_id, status="RUNNING")
            self._runs = self._trial_runs()
            return self._parent_id
        tags = {
            "hpsearch.role": "search",
            "hpsearch.search": self.search,
            "hpsearch.task": self.space.task.name,
            "hpsearch.study": self.study,
            "hpsearch.metric": self.space.metric,
            "hpsearch.mode": self.space.mode,
            "hpsearch.code_version": self._code,
            "hpsearch.command": self.command,
        }
        run = client.create_run(self._experiment_id, tags=tags, run_name=self.search)
        self._parent_id = run.info.run_id
        params = {**dataclasses.asdict(self.settings), "quick": self.quick, "space": str(self.space.path)}
        client.log_batch(self._parent_id, params=[Param(k, str(v)) for k, v in params.items()])
        client.log_artifact(self._parent_id, str(self.space.path))
        return self._parent_id

    def _get_or_create_experiment(self) -> str:
        client = self.client
        experiment = client.get_experiment_by_name(self.experiment)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(self.experiment)
        except Exception:
            # Another search may have created it in the meantime.
            experiment = client.get_experiment_by_name(self.experiment)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _trial_runs(self) -> dict[str, str]:
        runs: dict[str, str] = {}
        token = None
        while True:
            page = self.client.search_runs(
                [self._experiment_id],
                f"tags.`mlflow.parentRunId` = {_quote(self._parent_id)}",
                max_results=1000,
                page_token=token,
            )
            for run in page:
                runs[run.data.tags.get("hpsearch.trial_id", run.info.run_name)] = run.info.run_id
            token = page.token
            if not token:
                return runs

    def _start_trial(self, trial: Any) -> None:
        parent = self._open_parent()
        if parent is None:
            return
        client, trial_id = self.client, trial.trial_id
        run_id = self._runs.get(trial_id)
        if run_id is not None:  # --resume: the trial runs again in its earlier run
            client.update_run(run_id, status="RUNNING")
            client.log_batch(run_id, tags=[RunTag("hpsearch.fate", RUNNING)])
            self._last_step[trial_id] = self._last_logged_step(run_id)
            self._open.add(trial_id)
            return
        config = self._trial_config(trial.config)
        tags = {
            "mlflow.parentRunId": parent,
            "hpsearch.role": "trial",
            "hpsearch.search": self.search,
            "hpsearch.task": self.space.task.name,
            "hpsearch.trial_id": trial_id,
            "hpsearch.fate": RUNNING,
            "hpsearch.baseline": str(config == self._trial_config({})).lower(),
            "hpsearch.device": "cuda" if self.settings.gpus_per_trial > 0 else "cpu",
            "hpsearch.code_version": self._code,
        }
        run_id = client.create_run(self._experiment_id, tags=tags, run_name=trial_id).info.run_id
        self._runs[trial_id] = run_id
        self._open.add(trial_id)
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in config.items()])
        client.log_text(run_id, yaml.safe_dump(config, sort_keys=False), "config.yaml")

    def _log_epoch(self, trial_id: str, step: int, result: dict[str, Any]) -> None:
        run_id = self._runs.get(trial_id)
        # A trial restarted by --resume trains again from epoch 1: its earlier epochs are logged.
        if run_id is None or step <= self._last_step.get(trial_id, 0):
            return
        now = _now_ms()
        metrics = [Metric(k, float(v), now, step) for k in METRICS if is_number(v := result.get(k))]
        device = result.get("device")  # what the trial itself saw, where it says so
        tags = [RunTag("hpsearch.device", device)] if isinstance(device, str) and device else []
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self._last_step[trial_id] = step

    def _end_trial(self, trial_id: str, fate: str, error: str = "") -> None:
        run_id = self._runs.get(trial_id)
        if run_id is None:
            return
        tags = [RunTag("hpsearch.fate", fate)] + ([RunTag("hpsearch.error", error)] if error else [])
        self.client.log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, status="FAILED" if fate == FAILED else "FINISHED")
        self._open.discard(trial_id)

    def _kill_trial(self, trial_id: str) -> None:
        self.client.set_terminated(self._runs[trial_id], status="KILLED")

    def _trial_config(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.settings.trial_config(self.space.task, self.space.baseline, params)

    def _last_logged_step(self, run_id: str) -> int:
        logged = self.client.get_run(run_id).data.metrics
        key = next((k for k in METRICS if k in logged), None)
        return max((m.step for m in self.client.get_metric_history(run_id, key)), default=0) if key else 0

    # Failures

    def _try(self, what: str, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)``, or None with a one-line warning: tracking must never stop the search."""
        if self._off:
            return None
        try:
            return fn(*args)
        except Exception as e:
            log.warning("MLflow: %s failed: %s", what, _one_line(e))
            server = self._server()
            if server and not reachable(server):
                self._turn_off(f"the MLflow server at {server} stopped answering")
            return None

    def _server(self) -> str | None:
        return tracking_server(self.tracking_uri)

    def _turn_off(self, why: str) -> None:
        self._off = why
        log.warning("MLflow: %s; the search goes on without tracking", why)


def _first_error_line(trial: Any) -> str:
    """The error's own first line (``ValueError: ...``), not Ray's wrapper around it."""
    # Ray writes the error into the trial's local folder now and syncs it to storage later, so
    # read it there: trial.get_pickled_error() and get_error() read storage and find nothing yet.
    with contextlib.suppress(Exception), open(trial.pickled_error_file, "rb") as f:
        error = ray.cloudpickle.load(f)
        return _one_line(getattr(error, "cause", None) or error)
    with contextlib.suppress(Exception):
        # error.txt: a "Failure # n" header, Ray's wrapper line, a traceback, the error last.
        lines = [line for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()[:500]
    return "unknown error (see the trial's error.txt)"


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}"[:500]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def _now_ms() -> int:
    return int(time.time() * 1000)
