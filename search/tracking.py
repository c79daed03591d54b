"""A search in MLflow, as docs/tracking-schema.md lays it out: a parent run, a nested run per trial,
and a logged model for each of the best trials.

Tune calls its callbacks in the driver, so everything is written from one process through one
client: the default SQLite store (``sqlite:///mlflow.db`` in the working directory, which
``mlflow ui`` opens with no flags) then has a single writer however many trials run at once.
This module decides what goes to which run; every call goes through search/mlflow_buffer.py,
so tracking never stops a search: a failure is one line, and a server that stops answering
mid-search is waited for, with what it missed logged once it answers again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import logging
import math
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
from ray.tune import Callback, Checkpoint

from hpsearch.plumbing import tags as tag
from hpsearch.search.exported import build_classifier
from hpsearch.search.interrupt import search_stopping
from hpsearch.search.mlflow_buffer import BufferedMlflow, one_line
from hpsearch.search.provenance import DataIdentity, code_version, experiment_id
from hpsearch.search.searcher import STUDY_FILE, StudyRuns
from hpsearch.search.settings import SearchSettings
from hpsearch.search.space import Space
from hpsearch.search.trainable import INFO_FILE, MODEL_FILE, KeptCheckpoint, holds, read_checkpoint
from hpsearch.trainables.fates import FAILED, FINISHED_FATES, RUNNING, STOPPED, is_number, trial_fate
from hpsearch.trainables.loop import REPORT_METRICS
from hpsearch.trainables.tasks import Task, get_task

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a trial logs each report, with step=epoch (the report's number): the loop's, the device
# memory the trial was estimated to need before it started (trainables/memory.py) and, on a GPU,
# how busy it was since the last report (search/gpu_use.py).
METRICS = (*REPORT_METRICS, "mem_estimate_gb", "gpu_util_pct", "gpu_mem_used_gb")
MODEL_NAME = "model"  # a kept model's name: runs:/<trial run id>/model
MODEL_TAG, RANK_TAG = tag.MODEL_ID, tag.KEPT  # on the trial's run
# What a trial's reports say it ran on and in (search/trainable.py, the loop), as its run's tags.
RAN_ON = {"device": tag.DEVICE, "precision": tag.PRECISION, "compiled": tag.COMPILED}


class MlflowTracker(Callback):
    """Logs a search to MLflow from the driver: construct it there and pass it in Tune's callbacks.

    ``tracking_uri`` None is MLflow's own default (``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``);
    ``experiment`` None is the task's name. ``data`` (the search's data: its digest and source)
    tags the parent run and every trial's run, and is their MLflow dataset input. A search run
    again on the same ``experiment_dir`` (``--resume``) finds its parent and trial runs again by
    their tags instead of adding new ones; a trial that trains again gets a new run in place of
    its cut-short one (deleted), so that a run holds one attempt's history.

    With ``keep_models`` K > 0, a finished trial whose value ranks among the K best finished so
    far has its model logged as it completes (and one pushed out of them is dropped), so that the
    best models are in MLflow while a long search runs; ``finish`` settles the final K.
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
        keep_models: int = 0,
    ) -> None:
        self.space, self.settings, self.data = space, settings, data
        self.keep_models = keep_models
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
        folder = Path(self.study).parent
        self._mlflow = BufferedMlflow(
            self.tracking_uri,
            log=log,
            work="the search",
            kept_where=f"Every trial's results are in the search's folder {folder}",
        )
        self._study_runs = StudyRuns(Path(self.study), self.search)
        self._code: str | None = None
        self._experiment_id: str | None = None
        self._parent_id: str | None = None
        self._runs: dict[str, str] = {}  # trial id -> run id
        self._open: set[str] = set()  # trial ids whose run is RUNNING
        self._trials: dict[str, Any] = {}  # trial id -> Tune's trial, to start its run late if need be
        self._last_step: dict[str, int] = {}  # trial id -> last epoch logged
        # trial id -> how it ranks: (its best value, better first; its training time, as the
        # search's end breaks ties); and the finished trials' kept checkpoints, while they run.
        self._scores: dict[str, tuple[float, float]] = {}
        self._finished: dict[str, Checkpoint] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks with the tuner for --resume: no live client in the pickle, and a
        # restored tracker finds its runs again in MLflow rather than trusting stale ids.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # (A search pickled before data was tracked, or before models were kept as trials finished.)
        self.__dict__.update({"data": None, "keep_models": 0, **state})
        self._reset()

    @property
    def experiment_id(self) -> str | None:
        """The MLflow experiment's id, once the search's run is open (None if tracking is off)."""
        return self._experiment_id

    @property
    def client(self) -> MlflowClient:
        return self._mlflow.client

    def _try(self, what: str, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)`` through the buffering client: None, with a warning, if it failed."""
        return self._mlflow.call(what, fn, *args)

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
        self._score(trial.trial_id, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # (A trial stopped before it ran, by the search's time budget, has no run to end.)
        budget_s = self.settings.stopper_budget_s
        fate = trial_fate(trial.last_result, error=False, budget_s=budget_s, stopping=search_stopping())
        self._try(f"ending trial {trial.trial_id}'s run", self._end_trial, trial.trial_id, fate)
        if fate in FINISHED_FATES:
            self._keep_if_among_best(trial)

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
        failure: str | None = None,
    ) -> None:
        """Log each of ``models`` (the checkpoints the search keeps, best first) as its trial's
        MLflow model; log ``best_<metric>`` and ``files`` (a folder goes under its own name) on the
        search's run, then end it: FINISHED; KILLED if the search was ``interrupted`` or left a
        trial unended; FAILED, with ``failure`` (why: no trial finished) as its error, if it failed.

        Any tracker of the search can finish it (on --resume, Tune runs the one it unpickled):
        the runs are found by their tags, and unended trials by their fate, still `running`.
        A resumed search's models are those of its best trials now: a model logged earlier for a
        trial no longer among them is deleted, one still among them is not logged twice.
        """
        self._mlflow.probe_now()  # the search's last chance to log what the server missed
        self._try("keeping the best trials' models", self._keep_models, models)
        self._try("finishing the search's run", self._finish, best, files, interrupted, failure)
        self._mlflow.report_missed()

    def tag_search(self, key: str, value: str) -> None:
        """One more tag on the search's run (before the report that reads it is written)."""

        def set_tag() -> None:
            parent = self._open_parent()
            if parent is not None:
                self.client.set_tag(parent, key, value[:5000])

        self._try(f"tagging the search's run with {key}", set_tag)

    def _finish(
        self, best: dict[str, Any], files: Sequence[Path], interrupted: bool, failure: str | None = None
    ) -> None:
        parent = self._open_parent()
        if parent is None:
            return
        value = (best or {}).get(self.space.metric)
        if is_number(value):
            metric = Metric(f"best_{self.space.metric}", float(value), _now_ms(), 0)
            # The parent names its best trial, so the UI's search row leads to it.
            best_trial = str(best.get("best_trial", ""))
            tags = [RunTag(tag.BEST_TRIAL, best_trial)]
            if best_trial in self._runs:
                tags.append(RunTag(tag.BEST_RUN_ID, self._runs[best_trial]))
            self.client.log_batch(parent, metrics=[metric], tags=tags)
        self._log_search_files(parent, files)
        # Ctrl-C leaves Tune's trials TERMINATED, as if done: their fate tells them apart.
        unended = self._unended_trial_runs(parent, max_results=1)
        if interrupted or unended:
            status = "KILLED"
        elif failure:
            status = "FAILED"
            self.client.set_tag(parent, tag.ERROR, failure[:5000])
        else:
            status = "FINISHED"
            # A resumed search that failed before and now finished: no stale error on its run.
            with contextlib.suppress(Exception):
                self.client.delete_tag(parent, tag.ERROR)
        self.client.set_terminated(parent, status=status)

    # The search's own files, on its run. (What the search writes to its folder, e.g. trials.csv
    # or the Optuna journal, is logged here: a new one is one more path in ``files``, or a call
    # from ``_finish``.)

    def _log_search_files(self, parent: str, files: Sequence[Path]) -> None:
        """Each of ``files`` as an artifact of the search's run; a folder under its own name."""
        for path in map(Path, files):
            if path.is_dir():
                self.client.log_artifacts(parent, str(path), artifact_path=path.name)
            elif path.is_file():
                self.client.log_artifact(parent, str(path))

    # Models

    def _score(self, trial_id: str, result: dict[str, Any]) -> None:
        """Note the trial's best value so far, as the search's end ranks it (search/summary.py)."""
        value, time_s = result.get(self.space.metric), result.get("time_total_s")
        if not is_number(value):  # (NaN: a diverged report ranks nowhere)
            return
        better_first = -float(value) if self.space.mode == "max" else float(value)
        best, trained_s = self._scores.get(trial_id, (math.inf, 0.0))
        # Its best report's value; ties go to the trial that trained less time in all.
        self._scores[trial_id] = (min(best, better_first), max(trained_s, float(time_s or 0.0)))

    def _keep_if_among_best(self, trial: Any) -> None:
        """Log a finished trial's model now if it ranks among the ``keep_models`` best finished so
        far, re-rank the others logged, and drop the one it pushes out. Only trials this tracker
        saw finish are ranked: a resumed search's earlier models are left for ``finish``."""
        checkpoint = getattr(trial, "checkpoint", None)
        if not self.keep_models or trial.trial_id not in self._scores or checkpoint is None:
            return
        try:
            if not holds(checkpoint, INFO_FILE):  # not its kept model: its storage refused it
                return
        except OSError as e:  # the search's storage out of reach: finish() keeps the models
            log.warning("keeping trial %s's model: its checkpoint %s", trial.trial_id, one_line(e))
            return
        self._finished[trial.trial_id] = checkpoint
        ranked = sorted(self._finished, key=lambda t: self._scores[t])
        top = ranked[: self.keep_models]
        if trial.trial_id not in top:
            return
        models = [KeptCheckpoint(t, rank, self._finished[t]) for rank, t in enumerate(top, start=1)]
        drop = set(ranked[self.keep_models :])
        self._try(f"keeping trial {trial.trial_id}'s model", self._keep_models, models, drop)

    def _keep_models(self, models: Sequence[KeptCheckpoint], drop: set[str] | None = None) -> None:
        """Log each of ``models`` not logged yet and rank them all; delete the models of the
        trials in ``drop``, or (None, the search's end) of every trial not among ``models``."""
        parent = self._open_parent()
        if parent is None:
            return
        query = f"tags.`mlflow.parentRunId` = {_quote(parent)} AND tags.`{MODEL_TAG}` LIKE '%'"
        logged = {
            run.data.tags.get(tag.TRIAL_ID, run.info.run_name): run
            for run in self.client.search_runs([self._experiment_id], query, max_results=1000)
        }
        wanted = {kept.trial_id for kept in models}
        for trial_id, run in logged.items():
            if trial_id not in wanted and (drop is None or trial_id in drop):
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
                    tag.SEARCH: self.search,
                    tag.TASK: task.name,
                    tag.TRIAL_ID: kept.trial_id,
                    tag.RANK: str(kept.rank),
                    tag.CODE_VERSION: self._code or code_version(),
                    **({tag.DATA_DIGEST: self.data.digest} if self.data else {}),
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
        self.client.set_logged_model_tags(model_id, {tag.RANK: str(rank)})
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
        if self._parent_id is not None:
            return self._parent_id
        if not self._mlflow.answers():  # (a dead server turns tracking off, in one line)
            return None
        client = self.client
        self._code = code_version()
        self._experiment_id = experiment_id(self.client, self.experiment)
        query = (
            f"tags.`{tag.ROLE}` = 'search' AND tags.`{tag.SEARCH}` = {_quote(self.search)}"
            f" AND tags.`{tag.STUDY}` = {_quote(self.study)}"
        )
        if self.search_id:
            query += f" AND tags.`{tag.SEARCH_ID}` = {_quote(self.search_id)}"
        found = client.search_runs([self._experiment_id], query, max_results=1)
        if found:
            self._parent_id = found[0].info.run_id
            client.update_run(self._parent_id, status="RUNNING")
            self._runs = self._trial_runs()
            return self._parent_id
        tags = {
            tag.ROLE: "search",
            tag.SEARCH: self.search,
            tag.TASK: self.space.task.name,
            tag.STUDY: self.study,
            **({tag.SEARCH_ID: self.search_id} if self.search_id else {}),
            tag.METRIC: self.space.metric,
            tag.MODE: self.space.mode,
            tag.CODE_VERSION: self._code,
            tag.COMMAND: self.command,
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
                runs[run.data.tags.get(tag.TRIAL_ID, run.info.run_name)] = run.info.run_id
            token = page.token
            if not token:
                return runs

    def _start_trial(self, trial: Any) -> None:
        parent = self._open_parent()
        if parent is None:
            return
        client, trial_id = self.client, trial.trial_id
        earlier = self._runs.get(trial_id)
        if earlier is not None and self.settings.max_failures and getattr(trial, "checkpoint", None):
            # Retried (or resumed) from its latest report's checkpoint (search/trainable.py): its
            # run goes on where it was, with the reports before that checkpoint already in it.
            client.update_run(earlier, status="RUNNING")
            self._open.add(trial_id)
            return
        if earlier is not None:
            # --resume: the trial trains again from its first report. Its earlier, cut-short run
            # goes (deleted, so restorable): one run per trial, with one attempt's history.
            client.delete_run(earlier)
            self._last_step.pop(trial_id, None)
        config = self._trial_config(trial.config)
        tags = {
            "mlflow.parentRunId": parent,
            tag.ROLE: "trial",
            tag.SEARCH: self.search,
            tag.TASK: self.space.task.name,
            tag.TRIAL_ID: trial_id,
            tag.FATE: RUNNING,
            tag.BASELINE: str(config == self._trial_config({})).lower(),
            tag.DEVICE: "cuda" if self.settings.gpus_per_trial > 0 else "cpu",
            tag.CODE_VERSION: self._code,
            **(self.data.tags() if self.data else {}),
            **({tag.RESTARTED_FROM: earlier} if earlier else {}),
        }
        run_id = client.create_run(self._experiment_id, tags=tags, run_name=trial_id).info.run_id
        self._runs[trial_id] = run_id
        self._open.add(trial_id)
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in config.items()])
        client.log_text(run_id, yaml.safe_dump(config, sort_keys=False), "config.yaml")
        self._log_data(run_id)
        self._note_in_study(trial_id, run_id)

    def _note_in_study(self, trial_id: str, run_id: str) -> None:
        """The trial's run id on its Optuna trial (search/searcher.py), for optuna-dashboard's users."""
        # Never raises: the run is made, and a failure here must not have its start tried again.
        try:
            self._study_runs.note(trial_id, run_id)
        except Exception as e:
            log.warning("Optuna: noting trial %s's MLflow run in the study failed: %s", trial_id, one_line(e))

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
        ran = {name: result.get(key) for key, name in RAN_ON.items()}
        tags = [
            RunTag(name, str(value).lower() if isinstance(value, bool) else value)
            for name, value in ran.items()
            if isinstance(value, bool) or isinstance(value, str) and value
        ]
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self._last_step[trial_id] = step

    def _end_trial(self, trial_id: str, fate: str, error: str = "") -> None:
        if not self._started(trial_id):
            return
        run_id = self._runs[trial_id]
        tags = [RunTag(tag.FATE, fate)] + ([RunTag(tag.ERROR, error)] if error else [])
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
            if run.data.tags.get(tag.TRIAL_ID, run.info.run_name) in known:
                continue
            why = "the search's driver died while this trial ran, before Tune recorded it; not resumed"
            tags = [RunTag(tag.FATE, STOPPED), RunTag(tag.ERROR, why)]
            self.client.log_batch(run.info.run_id, tags=tags)
            self.client.set_terminated(run.info.run_id, status="KILLED")

    def _unended_trial_runs(self, parent: str, max_results: int) -> list[Run]:
        """The search's trial runs whose fate is still `running`."""
        return self.client.search_runs(
            [self._experiment_id],
            f"tags.`mlflow.parentRunId` = {_quote(parent)} AND tags.`{tag.FATE}` = '{RUNNING}'",
            max_results=max_results,
        )

    def _trial_config(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.settings.trial_config(self.space.task, self.space.baseline, params)


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
        return one_line(getattr(error, "cause", None) or error)
    with contextlib.suppress(Exception):
        # error.txt: a "Failure # n" header, Ray's wrapper line, a traceback, the error last.
        lines = [line for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()[:500]
    return "unknown error (see the trial's error.txt)"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (a container without one)
        return "unknown"
