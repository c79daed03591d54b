"""Retraining an exported configuration and evaluating it on test, logged as an MLflow "final" run.

The search only ever looked at validation accuracy; this is where test is touched, once per
retrained model. `search/train.py --config` and `search/ensemble.py` both go through here.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from mlflow.entities import Metric, Param, RunTag

from hpsearch.plumbing import tags as tag
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.data import load_space_data
from hpsearch.search.exported import ExportedConfig
from hpsearch.search.mlflow_buffer import BufferedMlflow
from hpsearch.search.provenance import DataIdentity, code_version, experiment_id
from hpsearch.trainables.data.splits import Split, Splits
from hpsearch.trainables.fates import DIVERGED
from hpsearch.trainables.loop import REPORT_METRICS, TrainResult, outputs_as_trained, train

log = logging.getLogger(__name__)
EPOCH_METRICS = REPORT_METRICS


@dataclass
class Retrained:
    exported: ExportedConfig
    config: dict[str, Any]
    result: TrainResult
    test_loss: float
    test_acc: float
    test_probs: torch.Tensor  # softmax outputs on test, for ensembles
    run_id: str | None  # the final run in MLflow, if it was logged


def load_export_data(
    exported: ExportedConfig,
    data_dir: Path,
    *,
    cache_dir: Path | None = None,
    download: bool = True,
    full_data: bool = False,
    space_file: Path | None = None,
) -> Splits:
    """The data the search trained on (its quick subset, if it was quick), or with ``full_data``
    the space's whole data."""
    space = exported.load_space(space_file)
    if space.task.name != exported.task:
        raise UsageError(
            f"the export's task is {exported.task!r} but its space {space.path} is {space.task.name!r}"
        )
    return load_space_data(
        space, data_dir, cache_dir=cache_dir, quick=exported.quick and not full_data, download=download
    )


def warn_if_other_data(exported: ExportedConfig, data: DataIdentity) -> bool:
    """Whether ``data`` is not what ``exported``'s search trained on, said in one warning line.

    An export from before digests were kept has none: nothing to compare, so no warning."""
    if not exported.data_digest or exported.data_digest == data.digest:
        return False
    other = exported.data_source and exported.data_source != data.source
    sources = f" (now {data.source}; the search's {exported.data_source})" if other else ""
    print(
        f"warning: this data differs from the search's (digest {data.digest} vs {exported.data_digest})"
        f"{sources}: val and test numbers are not comparable with those on the search's data",
        file=sys.stderr,
    )
    return True


def with_val_in_train(data: Splits) -> Splits:
    """Train on train+val: more data for the final model once the search has chosen with val.
    Val stays as it was, so each epoch still reports on it (no longer held out)."""
    train = Split(torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y]))
    return Splits(train, data.val, data.test, list(data.classes), data.source)


class FinalRunLog:
    """One MLflow run tagged ``hpsearch.role=final`` (docs/tracking-schema.md), written as training
    goes, so a retrain that dies still leaves its run. Logging never stops the training: every
    call goes through ``mlflow`` (search/mlflow_buffer.py), a failure is a one-line warning, and
    a server that stops answering mid-training gets what it missed once it answers again.

    ``mlflow`` None is a client of its own on ``tracking_uri``, which says at the run's end what
    was never logged; a caller that passes its own (an ensemble's members) says so at its end.
    """

    def __init__(self, tracking_uri: str | None = None, mlflow: BufferedMlflow | None = None) -> None:
        self.own = mlflow is None
        self.mlflow = mlflow or BufferedMlflow(tracking_uri, log=log, work="training")
        self.started = False
        self.run_id: str | None = None

    def start(
        self,
        exported: ExportedConfig,
        config: dict[str, Any],
        *,
        device: str,
        train_on_val: bool,
        data: DataIdentity,
    ) -> None:
        self.started = self.mlflow.answers()  # a server that does not answer: one line, then off
        if not self.started:
            return

        def create() -> None:
            client = self.mlflow.client
            experiment = exported.experiment or exported.task
            found_id = experiment_id(client, experiment)
            tags = {
                tag.ROLE: "final",
                tag.TASK: exported.task,
                tag.SEARCH: exported.search,
                tag.SOURCE_RUN: exported.run_id,
                tag.SEED: str(config["seed"]),
                tag.TRAIN_ON_VAL: str(train_on_val).lower(),
                tag.DEVICE: device,
                tag.CODE_VERSION: code_version(),
                **data.tags(),
            }
            if exported.data_digest:  # both digests, so the run itself says whether they differ
                tags[tag.SEARCH_DATA_DIGEST] = exported.data_digest
                tags[tag.DATA_MATCHES_SEARCH] = str(exported.data_digest == data.digest).lower()
            if exported.search_run_id and self._exists(exported.search_run_id):
                tags["mlflow.parentRunId"] = exported.search_run_id  # beside the search's trials in the UI
            name = f"final-{exported.name}-seed{config['seed']}"
            self.run_id = client.create_run(found_id, tags=tags, run_name=name).info.run_id
            client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in config.items()])
            client.log_text(self.run_id, yaml.safe_dump(config, sort_keys=False), "config.yaml")
            client.log_text(self.run_id, exported.to_yaml(), "exported.yaml")
            client.log_inputs(self.run_id, datasets=[data.dataset_input(exported.task)])

        self.mlflow.call("creating the final run", create)

    def log_epoch(self, report: dict[str, Any]) -> None:
        if not self.started:
            return
        now, step = int(time.time() * 1000), int(report["epoch"])
        metrics = [Metric(k, float(report[k]), now, step) for k in EPOCH_METRICS if k in report]
        self.mlflow.call(f"logging epoch {step}", self._log_batch, metrics, [])

    def end(
        self, status: str, metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None
    ) -> None:
        if not self.started:
            return
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
        run_tags = [RunTag(k, v) for k, v in (tags or {}).items()]
        self.mlflow.probe_now()  # the run's last chance to log what the server missed
        self.mlflow.call("ending the final run", self._finish, batch, run_tags, status)
        if self.own:
            self.mlflow.report_missed()

    # Each reads the run's id when it runs: a call kept while the server was down may run after
    # the run's creation, kept too, has given it one.

    def _log_batch(self, metrics: list[Metric], tags: list[RunTag]) -> None:
        if self.run_id is not None:  # None: the run could not be created
            self.mlflow.client.log_batch(self.run_id, metrics=metrics, tags=tags)

    def _finish(self, metrics: list[Metric], tags: list[RunTag], status: str) -> None:
        if self.run_id is not None:
            self._log_batch(metrics, tags)
            self.mlflow.client.set_terminated(self.run_id, status=status)

    def _exists(self, run_id: str) -> bool:
        try:
            self.mlflow.client.get_run(run_id)
            return True
        except Exception:
            return False


def retrain(
    exported: ExportedConfig,
    data: Splits,
    *,
    device: torch.device,
    seed: int,
    budget_s: float,
    train_on_val: bool = False,
    overrides: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
    track: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    data_identity: DataIdentity | None = None,
    mlflow: BufferedMlflow | None = None,
) -> Retrained:
    """Train ``exported``'s config with ``seed`` on ``data`` (on ``device``), evaluate on test.

    With ``train_on_val`` the model trains on train+val and keeps its last epoch's weights
    (validation can no longer pick an epoch); otherwise the weights of the epoch best by the
    search's metric. ``data_identity`` is ``data``'s, from a caller that has checked it against
    the export (``warn_if_other_data``); without it, it is computed and checked here. ``mlflow``
    is a caller's client shared by several retrains (an ensemble's); None, one on ``tracking_uri``.
    """
    task, config = exported.resolved({**(overrides or {}), "seed": seed})
    if data_identity is None:
        data_identity = DataIdentity.of(data)
        warn_if_other_data(exported, data_identity)
    if train_on_val:
        data = with_val_in_train(data)
    run = FinalRunLog(tracking_uri, mlflow)
    if track:
        run.start(exported, config, device=device.type, train_on_val=train_on_val, data=data_identity)

    def report(epoch: dict[str, Any]) -> None:
        run.log_epoch(epoch)
        if on_epoch is not None:
            on_epoch(epoch)

    try:
        result = train(
            task,
            config,
            data,
            device=device,
            budget_s=budget_s,
            on_epoch=report,
            keep_best=not train_on_val,
            metric=exported.metric,
            mode=exported.mode,
        )
    except KeyboardInterrupt:
        run.end("KILLED")
        raise
    except Exception as e:
        run.end("FAILED", tags={tag.ERROR: f"{type(e).__name__}: {e}"[:500]})
        raise
    try:
        check_trained(result)
    except UsageError:
        run.end("FAILED", tags={tag.FATE: result.stopped})
        raise
    probs, test_loss, test_acc = outputs_as_trained(result.model, data.test, task)  # one pass, as trained
    run.end(
        "FINISHED",
        metrics={"test_acc": test_acc, "test_loss": test_loss, "best_epoch": result.best_epoch},
        tags={tag.FATE: result.stopped},
    )
    return Retrained(exported, config, result, test_loss, test_acc, probs, run.run_id)


def check_trained(result: TrainResult) -> None:
    """Refuse to test a run that diverged before any finite report: its weights are the untrained
    ones (the loop never keeps NaN weights), and their test accuracy would pass for a result."""
    if result.stopped == DIVERGED and not result.best_epoch:
        raise UsageError(
            "the run diverged before its first report (a loss of NaN or inf): no trained weights to "
            "test; lower lr, or try another optimizer"
        )
