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
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from hpsearch.plumbing.errors import UsageError
from hpsearch.plumbing.servers import reachable, tracking_server
from hpsearch.search.data import load_space_data
from hpsearch.search.exported import ExportedConfig
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
    goes, so a retrain that dies still leaves its run. Logging never stops the training: a failure
    is a one-line warning and the rest of the run goes unlogged."""

    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri or None
        self.client: MlflowClient | None = None
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
        def create() -> None:
            server = tracking_server(self.tracking_uri)
            if server and not reachable(server):
                raise ConnectionError(f"no MLflow server answers at {server}")
            self.client = MlflowClient(self.tracking_uri)
            experiment = exported.experiment or exported.task
            found_id = experiment_id(self.client, experiment)
            tags = {
                "hpsearch.role": "final",
                "hpsearch.task": exported.task,
                "hpsearch.search": exported.search,
                "hpsearch.source_run": exported.run_id,
                "hpsearch.seed": str(config["seed"]),
                "hpsearch.train_on_val": str(train_on_val).lower(),
                "hpsearch.device": device,
                "hpsearch.code_version": code_version(),
                **data.tags(),
            }
            if exported.data_digest:  # both digests, so the run itself says whether they differ
                tags["hpsearch.search_data_digest"] = exported.data_digest
                tags["hpsearch.data_matches_search"] = str(exported.data_digest == data.digest).lower()
            if exported.search_run_id and self._exists(exported.search_run_id):
                tags["mlflow.parentRunId"] = exported.search_run_id  # beside the search's trials in the UI
            name = f"final-{exported.name}-seed{config['seed']}"
            self.run_id = self.client.create_run(found_id, tags=tags, run_name=name).info.run_id
            self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in config.items()])
            self.client.log_text(self.run_id, yaml.safe_dump(config, sort_keys=False), "config.yaml")
            self.client.log_text(self.run_id, exported.to_yaml(), "exported.yaml")
            self.client.log_inputs(self.run_id, datasets=[data.dataset_input(exported.task)])

        self._try("creating the final run", create)

    def log_epoch(self, report: dict[str, Any]) -> None:
        if self.run_id is None:
            return
        now, step = int(time.time() * 1000), int(report["epoch"])
        metrics = [Metric(k, float(report[k]), now, step) for k in EPOCH_METRICS if k in report]
        self._try(f"logging epoch {step}", lambda: self.client.log_batch(self.run_id, metrics=metrics))

    def end(
        self, status: str, metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None
    ) -> None:
        if self.run_id is None:
            return
        now = int(time.time() * 1000)

        def finish() -> None:
            batch = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
            self.client.log_batch(
                self.run_id, metrics=batch, tags=[RunTag(k, v) for k, v in (tags or {}).items()]
            )
            self.client.set_terminated(self.run_id, status=status)

        self._try("ending the final run", finish)

    def _exists(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
            return True
        except Exception:
            return False

    def _try(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0]
            log.warning(
                "MLflow: %s failed (%s: %s); training goes on unlogged", what, type(e).__name__, first
            )
            self.client, self.run_id = None, None


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
) -> Retrained:
    """Train ``exported``'s config with ``seed`` on ``data`` (on ``device``), evaluate on test.

    With ``train_on_val`` the model trains on train+val and keeps its last epoch's weights
    (validation can no longer pick an epoch); otherwise the best validation epoch's.
    ``data_identity`` is ``data``'s, from a caller that has checked it against the export
    (``warn_if_other_data``); without it, it is computed and checked here.
    """
    task, config = exported.resolved({**(overrides or {}), "seed": seed})
    if data_identity is None:
        data_identity = DataIdentity.of(data)
        warn_if_other_data(exported, data_identity)
    if train_on_val:
        data = with_val_in_train(data)
    run = FinalRunLog(tracking_uri)
    if track:
        run.start(exported, config, device=device.type, train_on_val=train_on_val, data=data_identity)

    def report(epoch: dict[str, Any]) -> None:
        run.log_epoch(epoch)
        if on_epoch is not None:
            on_epoch(epoch)

    try:
        result = train(
            task, config, data, device=device, budget_s=budget_s, on_epoch=report, keep_best=not train_on_val
        )
    except KeyboardInterrupt:
        run.end("KILLED")
        raise
    except Exception as e:
        run.end("FAILED", tags={"hpsearch.error": f"{type(e).__name__}: {e}"[:500]})
        raise
    try:
        check_trained(result)
    except UsageError:
        run.end("FAILED", tags={"hpsearch.fate": result.stopped})
        raise
    probs, test_loss, test_acc = outputs_as_trained(result.model, data.test, task)  # one pass, as trained
    run.end(
        "FINISHED",
        metrics={"test_acc": test_acc, "test_loss": test_loss, "best_epoch": result.best_epoch},
        tags={"hpsearch.fate": result.stopped},
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
