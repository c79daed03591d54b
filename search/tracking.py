"""A search in MLflow, as docs/tracking-schema.md lays it out: a parent run, a nested run per trial,
and a logged model for each of the best trials.

Tune calls its callbacks in the driver, so everything is written from one process through one
client: the default SQLite store (``sqlite:///mlflow.db`` in the working directory, which
``mlflow ui`` opens with no flags) then has a single writer however many trials run at once.
Tracking never stops a search: a failure is reported in one line and the search goes on. A
tracking server that stops answering mid-search is waited for, not given up on: what the search
would have logged meanwhile is kept, in order, and logged once the server answers again; what
never could be is listed at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import mlflow.pytorch
import numpy as np
import ray.cloudpickle
import torch
import yaml
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus, Metric, Param, Run, RunTag
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec
from ray.tune import Callback

from hpsearch.plumbing.servers import reachable, redact, tracking_server
from hpsearch.search.exported import build_classifier
from hpsearch.search.interrupt import search_stopping
from hpsearch.search.provenance import DATA_DIGEST_TAG, DataIdentity, code_version, experiment_id
from hpsearch.search.searcher import STUDY_FILE
from hpsearch.search.settings import SearchSettings
from hpsearch.search.space import Space
from hpsearch.search.trainable import INFO_FILE, MODEL_FILE, KeptCheckpoint, read_checkpoint
from hpsearch.trainables.fates import FAILED, RUNNING, STOPPED, is_number, trial_fate
from hpsearch.trainables.loop import REPORT_METRICS
from hpsearch.trainables.tasks import Task, get_task

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a trial logs each report, with step=epoch (the report's number): the loop's, the device
# memory the trial was estimated to need before it started (trainables/memory.py) and, on a GPU,
# how busy it was since the last report (search/gpu_use.py).
METRICS = (*REPORT_METRICS, "mem_estimate_gb", "gpu_util_pct", "gpu_mem_used_gb")
MODEL_NAME = "model"  # a kept model's name: runs:/<trial run id>/model
MODEL_TAG, RANK_TAG = "hpsearch.model_id", "hpsearch.kept"  # on the trial's run


PROBE_EVERY_S = 5.0  # while the tracking server is down, how often the tracker asks if it is back


class MlflowTracker(Callback):
    """Logs a search to MLflow from the driver: construct it there and pass it in Tune's callbacks.

    ``tracking_uri`` None is MLflow's own default (``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``);
    ``experiment`` None is the task's name. ``data`` (the search's data: its digest and source)
    tags the parent run and every trial's run, and is their MLflow dataset input. A search run
    again on the same ``experiment_dir`` (``--resume``) finds its parent and trial runs again by
    their tags instead of adding new ones; a trial that trains again gets a new run in place of
    its cut-short one (deleted), so that a run holds one attempt's history.
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
        data: DataIdentity | None = None,
        search_id: str | None = None,
    ) -> None:
        self.space, self.settings, self.data = space, settings, data
        self.search = experiment_dir.name
        self.study = str((Path(experiment_dir) / STUDY_FILE).resolve())
        # The search's own id, kept by --resume: a new search in a folder where a deleted one ran
        # under the same name (same study path) must not reopen that one's run.
        self.search_id = search_id
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
        self._trials: dict[str, Any] = {}  # trial id -> Tune's trial, to start its run late if need be
        self._last_step: dict[str, int] = {}  # trial id -> last epoch logged
        self._off: str | None = None  # why tracking stopped, once it has
        # While the server does not answer: the calls it missed, in order, to log when it is back.
        self._missed: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = []
        self._down_since: float | None = None  # time.monotonic() when it stopped answering
        self._next_probe = 0.0  # when to ask again whether it answers

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks with the tuner for --resume: no live client in the pickle, and a
        # restored tracker finds its runs again in MLflow rather than trusting stale ids.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"data": None, **state})  # a search pickled before data was tracked
        self._reset()

    @property
    def experiment_id(self) -> str | None:
        """The MLflow experiment's id, once the search's run is open (None if tracking is off)."""
        return self._experiment_id

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # Tune's callbacks

    def setup(self, **info: Any) -> None:
        self._try("opening the search's run", self._open_parent)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trials[trial.trial_id] = trial
        self._try(f"starting trial {trial.trial_id}", self._start_trial, trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        what = f"logging trial {trial.trial_id} epoch {step}"
        self._try(what, self._log_epoch, trial.trial_id, step, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # (A trial stopped before it ran, by the search's time budget, has no run to end.)
        budget_s = self.settings.stopper_budget_s
        fate = trial_fate(trial.last_result, error=False, budget_s=budget_s, stopping=search_stopping())
        self._try(f"ending trial {trial.trial_id}'s run", self._end_trial, trial.trial_id, fate)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trials.setdefault(trial.trial_id, trial)  # one that failed before it started is a trial too
        error = _first_error_line(trial)
        self._try(f"ending trial {trial.trial_id}'s run", self._end_trial, trial.trial_id, FAILED, error)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Trials still running when the search stops (Ctrl-C, a crash) keep fate `running`;
        # on --resume they train again, each in a new run that replaces its cut-short one.
        for trial_id in sorted(set(self._open) | set(self._trials)):
            self._try(f"closing trial {trial_id}'s run", self._kill_trial, trial_id)
        self._try("closing the runs of trials Tune lost", self._close_lost, {t.trial_id for t in trials})

    # The search's end, called by search/run.py

    def finish(
        self,
        best: dict[str, Any],
        files: Sequence[Path],
        *,
        interrupted: bool = False,
        models: Sequence[KeptCheckpoint] = (),
    ) -> None:
        """Log each of ``models`` (the checkpoints the search keeps, best first) as its trial's
        MLflow model; log ``best_<metric>`` and ``files`` (a folder goes under its own name) on the
        search's run, then end it: FINISHED, or KILLED if the search was ``interrupted`` or left a
        trial unended.

        Any tracker of the search can finish it (on --resume, Tune runs the one it unpickled):
        the runs are found by their tags, and unended trials by their fate, still `running`.
        A resumed search's models are those of its best trials now: a model logged earlier for a
        trial no longer among them is deleted, one still among them is not logged twice.
        """
        self._next_probe = 0.0  # the search's last chance to log what the server missed
        self._try("keeping the best trials' models", self._keep_models, models)
        self._try("finishing the search's run", self._finish, best, files, interrupted)
        if self._missed:
            self._report_missed()

    def tag_search(self, key: str, value: str) -> None:
        """One more tag on the search's run (before the report that reads it is written)."""

        def tag() -> None:
            parent = self._open_parent()
            if parent is not None:
                self.client.set_tag(parent, key, value[:5000])

        self._try(f"tagging the search's run with {key}", tag)

    def _finish(self, best: dict[str, Any], files: Sequence[Path], interrupted: bool) -> None:
        parent = self._open_parent()
        if parent is None:
            return
        value = (best or {}).get(self.space.metric)
        if is_number(value):
            metric = Metric(f"best_{self.space.metric}", float(value), _now_ms(), 0)
            # The parent names its best trial, so the UI's search row leads to it.
            best_trial = str(best.get("best_trial", ""))
            tags = [RunTag("hpsearch.best_trial", best_trial)]
            if best_trial in self._runs:
                tags.append(RunTag("hpsearch.best_run_id", self._runs[best_trial]))
            self.client.log_batch(parent, metrics=[metric], tags=tags)
        for path in map(Path, files):
            if path.is_dir():
                self.client.log_artifacts(parent, str(path), artifact_path=path.name)
            elif path.is_file():
                self.client.log_artifact(parent, str(path))
        # Ctrl-C leaves Tune's trials TERMINATED, as if done: their fate tells them apart.
        unended = self._unended_trial_runs(parent, max_results=1)
        self.client.set_terminated(parent, status="KILLED" if interrupted or unended else "FINISHED")

    # Models

    def _keep_models(self, models: Sequence[KeptCheckpoint]) -> None:
        parent = self._open_parent()
        if parent is None:
            return
        query = f"tags.`mlflow.parentRunId` = {_quote(parent)} AND tags.`{MODEL_TAG}` LIKE '%'"
        logged = {
            run.data.tags.get("hpsearch.trial_id", run.info.run_name): run
            for run in self.client.search_runs([self._experiment_id], query, max_results=1000)
        }
        wanted = {kept.trial_id for kept in models}
        for trial_id, run in logged.items():
            if trial_id not in wanted:
                self._try(f"deleting trial {trial_id}'s model", self._drop_model, run)
        for kept in models:
            what = f"logging trial {kept.trial_id}'s model"
            self._try(what, self._log_model, kept, logged.get(kept.trial_id))

    def _log_model(self, kept: KeptCheckpoint, logged: Run | None) -> None:
        run_id = self._runs.get(kept.trial_id)
        if run_id is None:
            raise LookupError(f"no MLflow run for trial {kept.trial_id}")
        if logged is not None:
            if self._ready(logged.data.tags[MODEL_TAG]):
                self._set_rank(run_id, logged.data.tags[MODEL_TAG], kept.rank)
                return
            self._drop_model(logged)  # a model that failed half way, or was deleted since
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per file otherwise
        with kept.checkpoint.as_directory() as folder:
            state, info, example = read_checkpoint(Path(folder))
            task = get_task(info["task"])
            model = self.client.create_logged_model(
                self._experiment_id,
                name=MODEL_NAME,
                source_run_id=run_id,
                params={k: str(v) for k, v in info["config"].items()},
                tags={
                    "hpsearch.search": self.search,
                    "hpsearch.task": task.name,
                    "hpsearch.trial_id": kept.trial_id,
                    "hpsearch.rank": str(kept.rank),
                    "hpsearch.code_version": self._code or code_version(),
                    **({DATA_DIGEST_TAG: self.data.digest} if self.data else {}),
                },
                model_type="classifier",
            )
            try:
                with global_tracking_uri(self.tracking_uri), warnings.catch_warnings():
                    # The LSTM's flat weights, which torch.export notes and handles.
                    warnings.filterwarnings("ignore", message="The tensor attributes .* during export")
                    mlflow.pytorch.log_model(
                        build_classifier(task, info["config"], state),
                        name=MODEL_NAME,
                        model_id=model.model_id,
                        run_id=run_id,
                        step=int(info["best_epoch"]),  # links the best report's metrics to the model
                        signature=model_signature(task),
                        input_example=example.float().div(255).numpy(),
                        metadata=_model_metadata(task, info),
                        extra_files=[str(Path(folder) / MODEL_FILE), str(Path(folder) / INFO_FILE)],
                        # Given, so MLflow need not load the model in a subprocess to infer them.
                        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                    )
            except BaseException:
                with contextlib.suppress(Exception):  # no half-logged model left behind
                    self.client.delete_logged_model(model.model_id)
                raise
        self._set_rank(run_id, model.model_id, kept.rank)

    def _ready(self, model_id: str) -> bool:
        try:
            return self.client.get_logged_model(model_id).status == LoggedModelStatus.READY
        except Exception:  # deleted since
            return False

    def _set_rank(self, run_id: str, model_id: str, rank: int) -> None:
        self.client.set_logged_model_tags(model_id, {"hpsearch.rank": str(rank)})
        tags = [RunTag(MODEL_TAG, model_id), RunTag(RANK_TAG, str(rank))]
        self.client.log_batch(run_id, tags=tags)

    def _drop_model(self, run: Run) -> None:
        with contextlib.suppress(Exception):  # already gone
            self.client.delete_logged_model(run.data.tags[MODEL_TAG])
        for key in (MODEL_TAG, RANK_TAG):
            if key in run.data.tags:
                self.client.delete_tag(run.info.run_id, key)

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
        self._experiment_id = experiment_id(self.client, self.experiment)
        query = (
            f"tags.`hpsearch.role` = 'search' AND tags.`hpsearch.search` = {_quote(self.search)}"
            f" AND tags.`hpsearch.study` = {_quote(self.study)}"
        )
        if self.search_id:
            query += f" AND tags.`hpsearch.search_id` = {_quote(self.search_id)}"
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
            **({"hpsearch.search_id": self.search_id} if self.search_id else {}),
            "hpsearch.metric": self.space.metric,
            "hpsearch.mode": self.space.mode,
            "hpsearch.code_version": self._code,
            "hpsearch.command": self.command,
            # MLflow's own columns: who ran it, from what.
            "mlflow.user": _user(),
            "mlflow.source.name": "search/run.py",
            "mlflow.source.type": "LOCAL",
            "mlflow.source.git.commit": self._code.removesuffix("-dirty"),
            **(self.data.tags() if self.data else {}),
        }
        run = client.create_run(self._experiment_id, tags=tags, run_name=self.search)
        self._parent_id = run.info.run_id
        params = {**dataclasses.asdict(self.settings), "quick": self.quick, "space": str(self.space.path)}
        client.log_batch(self._parent_id, params=[Param(k, str(v)) for k, v in params.items()])
        client.log_artifact(self._parent_id, str(self.space.path))
        self._log_data(self._parent_id)
        return self._parent_id

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
        earlier = self._runs.get(trial_id)
        if earlier is not None:
            # --resume: the trial trains again from its first report. Its earlier, cut-short run
            # goes (deleted, so restorable): one run per trial, with one attempt's history.
            client.delete_run(earlier)
            self._last_step.pop(trial_id, None)
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
            **(self.data.tags() if self.data else {}),
            **({"hpsearch.restarted_from": earlier} if earlier else {}),
        }
        run_id = client.create_run(self._experiment_id, tags=tags, run_name=trial_id).info.run_id
        self._runs[trial_id] = run_id
        self._open.add(trial_id)
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in config.items()])
        client.log_text(run_id, yaml.safe_dump(config, sort_keys=False), "config.yaml")
        self._log_data(run_id)

    def _log_data(self, run_id: str) -> None:
        if self.data is not None:
            self.client.log_inputs(run_id, datasets=[self.data.dataset_input(self.space.task.name)])

    def _started(self, trial_id: str) -> bool:
        """Whether the trial's run is open, starting it now if its start failed earlier (a
        trial whose run could not be started once still gets its epochs and its fate)."""
        if trial_id not in self._open and trial_id in self._trials:
            self._start_trial(self._trials[trial_id])
        return trial_id in self._open

    def _log_epoch(self, trial_id: str, step: int, result: dict[str, Any]) -> None:
        if not self._started(trial_id):
            return
        run_id = self._runs.get(trial_id)
        # Each step once per run.
        if run_id is None or step <= self._last_step.get(trial_id, 0):
            return
        now = _now_ms()
        metrics = [Metric(k, float(v), now, step) for k in METRICS if is_number(v := result.get(k))]
        # What the trial itself ran on and in, where it says so (search/trainable.py, the loop).
        ran = {key: result.get(key) for key in ("device", "precision", "compiled")}
        tags = [
            RunTag(f"hpsearch.{key}", str(value).lower() if isinstance(value, bool) else value)
            for key, value in ran.items()
            if isinstance(value, bool) or isinstance(value, str) and value
        ]
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self._last_step[trial_id] = step

    def _end_trial(self, trial_id: str, fate: str, error: str = "") -> None:
        if not self._started(trial_id):
            return
        run_id = self._runs[trial_id]
        tags = [RunTag("hpsearch.fate", fate)] + ([RunTag("hpsearch.error", error)] if error else [])
        self.client.log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, status="FAILED" if fate == FAILED else "FINISHED")
        self._open.discard(trial_id)
        self._trials.pop(trial_id, None)

    def _kill_trial(self, trial_id: str) -> None:
        # Checked when it runs, not when it was asked for: a call the server missed may have
        # ended the run first.
        if trial_id in self._open:
            self.client.set_terminated(self._runs[trial_id], status="KILLED")
            self._open.discard(trial_id)
        self._trials.pop(trial_id, None)

    def _close_lost(self, known: set[str]) -> None:
        # A driver killed outright (OOM killer, lost node) between a trial's start and Tune's
        # next checkpoint leaves a run Tune never recorded: --resume does not run that trial
        # again (its Optuna trial is failed, search/searcher.py), so nothing else would end it.
        parent = self._open_parent()
        if parent is None:
            return
        for run in self._unended_trial_runs(parent, max_results=1000):
            if run.data.tags.get("hpsearch.trial_id", run.info.run_name) in known:
                continue
            why = "the search's driver died while this trial ran, before Tune recorded it; not resumed"
            tags = [RunTag("hpsearch.fate", STOPPED), RunTag("hpsearch.error", why)]
            self.client.log_batch(run.info.run_id, tags=tags)
            self.client.set_terminated(run.info.run_id, status="KILLED")

    def _unended_trial_runs(self, parent: str, max_results: int) -> list[Run]:
        """The search's trial runs whose fate is still `running`."""
        return self.client.search_runs(
            [self._experiment_id],
            f"tags.`mlflow.parentRunId` = {_quote(parent)} AND tags.`hpsearch.fate` = '{RUNNING}'",
            max_results=max_results,
        )

    def _trial_config(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.settings.trial_config(self.space.task, self.space.baseline, params)

    # Failures

    def _try(self, what: str, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)``, or None with a one-line warning: tracking must never stop the search.

        While the server does not answer, the call is kept for when it does (``_missed``).
        """
        if self._off:
            return None
        if self._down_since is not None and not self._back():
            self._missed.append((what, fn, args))
            return None
        try:
            return fn(*args)
        except Exception as e:
            server = self._server()
            if server and not reachable(server):
                self._went_down(server)
                self._missed.append((what, fn, args))
            else:
                log.warning("MLflow: %s failed: %s", what, _one_line(e))
            return None

    def _went_down(self, server: str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._next_probe = self._down_since + PROBE_EVERY_S
            log.warning(
                "MLflow: the server at %s stopped answering; the search goes on and logs what it "
                "misses once the server answers again",
                redact(server),
            )

    def _back(self) -> bool:
        """Whether the server answers again (asked at most every ``PROBE_EVERY_S``); if so, log
        the calls it missed, in order. False while it does not, or stops again meanwhile."""
        if time.monotonic() < self._next_probe:
            return False
        self._next_probe = time.monotonic() + PROBE_EVERY_S
        server = self._server()
        if server and not reachable(server, timeout_s=2.0):
            return False
        missed, self._missed = self._missed, []
        down_s = time.monotonic() - (self._down_since or time.monotonic())
        self._down_since = None
        for i, (what, fn, args) in enumerate(missed):
            self._try(what, fn, *args)
            if self._down_since is not None:  # down again: the rest waits, in order, behind it
                self._missed += missed[i + 1 :]
                return False
        log.warning(
            "MLflow: the server at %s answers again after %.0f s; logged the %d calls it missed",
            redact(server or ""),
            down_s,
            len(missed),
        )
        return True

    def _report_missed(self) -> None:
        """Say what the search could not log: the server never came back."""
        whats = [what for what, _, _ in self._missed]
        shown = "; ".join(whats[:6]) + (f"; and {len(whats) - 6} more" if len(whats) > 6 else "")
        log.warning(
            "MLflow: the server at %s did not answer again: %d calls not logged (%s). Every trial's "
            "results are in the search's folder %s",
            redact(self._server() or ""),
            len(whats),
            shown,
            Path(self.study).parent,
        )

    def _server(self) -> str | None:
        return tracking_server(self.tracking_uri)

    def _turn_off(self, why: str) -> None:
        self._off = why
        log.warning("MLflow: %s; the search goes on without tracking", why)


def model_signature(task: Task) -> ModelSignature:
    """What a kept model takes and gives (search/exported.py's Classifier); the batch size is free."""
    channels, height, width = task.input_shape
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, channels, height, width))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, task.num_classes))]),
    )


def _model_metadata(task: Task, info: dict[str, Any]) -> dict[str, Any]:
    c, h, w = task.input_shape
    return {
        "task": task.name,
        "classes": list(info["classes"]),
        "input": f"float32 [N, {c}, {h}, {w}]: uint8 pixels / 255, as the task's training images look "
        "(search/predict.py converts a picture); normalised inside the model",
        "output": f"float32 [N, {task.num_classes}]: softmax probabilities, in the order of `classes`",
        "metric": info["metric"],
        "value": info["value"],
        "best_epoch": info["best_epoch"],
        "horizon_epochs": info["horizon_epochs"],
    }


@contextlib.contextmanager
def global_tracking_uri(uri: str | None) -> Iterator[None]:
    """Point MLflow's global tracking URI at ``uri`` meanwhile. ``mlflow.pytorch.log_model`` has no
    client of its own, and reading a ``runs:/`` or ``models:/`` URI finds the logged model through
    the global store whatever ``tracking_uri`` it is given (MLflow 3.17). None is MLflow's default,
    which the global one already is."""
    if not uri:
        yield
        return
    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


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


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (a container without one)
        return "unknown"
