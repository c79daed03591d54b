"""One search, read back from MLflow: its parent run and a table of its trials with their histories.

Reads only what docs/tracking-schema.md says a search writes, so a report can be made from the
tracking store alone, long after the results directory is gone.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType

from hpsearch.plumbing import tags as tag
from hpsearch.plumbing.errors import UsageError
from hpsearch.plumbing.servers import reachable, redact, tracking_server
from hpsearch.reports.chance import chance_ceiling, chance_level
from hpsearch.trainables.fates import FINISHED_FATES, PRUNED

PRUNED_FATES = (PRUNED,)
PARAM = "param."  # prefix of the trial table's hyperparameter columns
_PAGE = 1000


@dataclass
class SearchRuns:
    """A search as the report needs it: one row per trial, one metric history per trial run."""

    experiment: str
    search: str
    metric: str
    mode: str  # "max" or "min"
    parent: Run
    trials: pd.DataFrame  # trial_id, run_id, fate, baseline, error, start, end, best, best_epoch, ...
    histories: dict[str, pd.Series] = field(default_factory=dict)  # run_id -> metric by epoch

    @property
    def started(self) -> pd.Timestamp:
        return _time(self.parent.info.start_time)

    def finished(self) -> pd.DataFrame:
        """Trials trained to their own end, best first: the only ones fairly ranked together."""
        return self._ranked(self.trials[self.trials["fate"].isin(FINISHED_FATES)])

    def pruned(self) -> pd.DataFrame:
        return self._ranked(self.trials[self.trials["fate"].isin(PRUNED_FATES)])

    def stopped(self) -> pd.DataFrame:
        """Diverged, failed and never-ended (`running`) trials."""
        others = ~self.trials["fate"].isin(FINISHED_FATES + PRUNED_FATES)
        return self._ranked(self.trials[others])

    def params(self) -> list[str]:
        """The trial table's hyperparameter columns (every resolved config value a trial logged)."""
        return [c for c in self.trials.columns if c.startswith(PARAM)]

    @property
    def report_unit(self) -> str:
        """What a metric step counts: "epoch", or "report" when trials reported within epochs."""
        return "epoch" if self.parent.data.params.get("reports_per_epoch", "1") == "1" else "report"

    @property
    def chance(self) -> float | None:
        """The metric's chance level: 1/classes for an accuracy of a registered task, else None."""
        if self.mode != "max" or not self.metric.endswith("acc"):
            return None
        return chance_level(self.parent.data.tags.get(tag.TASK))

    def at_chance(self, frame: pd.DataFrame) -> pd.Series:
        """Which of `frame`'s trials trained to their own end and scored no better than chance."""
        if self.chance is None:
            return pd.Series(False, index=frame.index, dtype=bool)
        finished = frame["fate"].isin(FINISHED_FATES)
        return finished & (frame["best"] <= chance_ceiling(self.chance))

    def _ranked(self, frame: pd.DataFrame) -> pd.DataFrame:
        # Ties go to the cheaper trial.
        return frame.sort_values(
            ["best", "train_time_s"], ascending=[self.mode == "min", True], na_position="last"
        ).reset_index(drop=True)


def add_search_arguments(parser: argparse.ArgumentParser, default_out: Path) -> None:
    """The options that pick a search in a tracking store, and an output folder named after it."""
    parser.add_argument("--experiment", help="MLflow experiment (default: that of the most recent search)")
    parser.add_argument(
        "--name",
        dest="search",
        metavar="NAME",
        help="the search's name (default: the experiment's most recent search)",
    )
    parser.add_argument("--search", dest="search", help=argparse.SUPPRESS)  # the old spelling, kept
    parser.add_argument("--out", type=Path, help=f"output folder (default {default_out}/<search>)")
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or MLflow's own)"
    )


def open_client(tracking_uri: str | None) -> MlflowClient:
    """A client on the store; a local store that does not exist is a user mistake, not a new store."""
    if tracking_uri:
        path = _local_store_path(tracking_uri)
        if path is not None and not path.exists():
            raise UsageError(f"no MLflow store at {path} (from --tracking-uri {tracking_uri})")
    server = tracking_server(tracking_uri)
    if server and not reachable(server):
        # MLflow's own client would retry for minutes before a traceback.
        raise UsageError(f"the MLflow server at {redact(server)} does not answer")
    return MlflowClient(tracking_uri=tracking_uri)


def latest_search(client: MlflowClient, experiment: str | None, search: str | None = None) -> tuple[str, str]:
    """(experiment, search) of the most recently started search (named `search`, if given),
    in one experiment or, with none given, in all of them."""
    if experiment is None:
        experiment_ids = [e.experiment_id for e in _all_experiments(client)]
    else:
        experiment_ids = [_experiment(client, experiment).experiment_id]
    query = f"tags.`{tag.ROLE}` = 'search'"
    if search is not None:
        query += f" AND tags.`{tag.SEARCH}` = {_quote(search)}"
    runs = (
        client.search_runs(experiment_ids, query, max_results=1, order_by=["attributes.start_time DESC"])
        if experiment_ids
        else []
    )
    if not runs:
        what = f"search {search!r}" if search else "search"
        where = f"experiment {experiment!r}" if experiment else "any experiment"
        raise UsageError(f"no {what} in {where} of the tracking store {client.tracking_uri}")
    run = runs[0]
    return client.get_experiment(run.info.experiment_id).name, run.data.tags[tag.SEARCH]


def load_search(client: MlflowClient, experiment: str, search: str) -> SearchRuns:
    """The search's trials (every trial run tagged with its name) and their metric histories."""
    exp = _experiment(client, experiment)
    name = _quote(search)
    parents = client.search_runs(
        [exp.experiment_id],
        f"tags.`{tag.ROLE}` = 'search' AND tags.`{tag.SEARCH}` = {name}",
        order_by=["attributes.start_time DESC"],
    )
    if not parents:
        known = sorted({r.data.tags.get(tag.SEARCH, "?") for r in _all_runs(client, exp, "search")})
        hint = f"; searches there: {', '.join(known)}" if known else "; it has no searches"
        raise UsageError(f"no search {search!r} in experiment {experiment!r}{hint}")
    parent = parents[0]  # a resumed search may have several parent runs: the latest holds the tags
    metric = parent.data.tags.get(tag.METRIC, "val_acc")
    mode = parent.data.tags.get(tag.MODE, "max")

    # Trials by their parent run, not by name: two searches given the same --name (in two
    # results folders, or one after the other in a folder deleted between them) are two
    # searches. One search's parents (a resumed one has several) share its id, and before
    # searches had ids, their Optuna study file.
    key = tag.SEARCH_ID if tag.SEARCH_ID in parent.data.tags else tag.STUDY
    mine = parent.data.tags.get(key)
    own = [p for p in parents if mine and p.data.tags.get(key) == mine] or [parent]
    runs = [
        run
        for p in own
        for run in _all_runs(
            client, exp, "trial", f" AND tags.`mlflow.parentRunId` = {_quote(p.info.run_id)}"
        )
    ]
    rows, histories = [], {}
    for run in _latest_per_trial(runs):
        history = _history(client, run.info.run_id, metric)
        histories[run.info.run_id] = history
        rows.append(_trial_row(run, history, mode))
    return SearchRuns(experiment, search, metric, mode, parent, _frame(rows), histories)


def _trial_row(run: Run, history: pd.Series, mode: str) -> dict[str, Any]:
    tags, metrics = run.data.tags, run.data.metrics
    row: dict[str, Any] = {
        "trial_id": tags.get(tag.TRIAL_ID) or run.info.run_name,
        "run_id": run.info.run_id,
        "fate": tags.get(tag.FATE, "running"),
        "baseline": tags.get(tag.BASELINE) == "true",
        "error": tags.get(tag.ERROR, ""),
        "start": _time(run.info.start_time),
        "end": _time(run.info.end_time),
        "best": math.nan,
        "best_epoch": pd.NA,
        "epochs_run": pd.NA,
        # Latest value (MLflow keeps the one at the highest step): the trial's total training time.
        "train_time_s": metrics.get("time_total_s", math.nan),
    }
    if len(history):
        best_epoch = history.idxmax() if mode == "max" else history.idxmin()
        row.update(best=history[best_epoch], best_epoch=best_epoch, epochs_run=history.index.max())
    row.update({PARAM + k: v for k, v in run.data.params.items()})
    return row


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    columns = ["trial_id", "run_id", "fate", "baseline", "error", "start", "end", "best"]
    frame = pd.DataFrame(rows, columns=None if rows else columns + ["best_epoch", "epochs_run"])
    frame["train_time_s"] = frame.get("train_time_s", pd.Series(dtype=float)).astype(float)
    frame["best"] = frame["best"].astype(float)
    frame["baseline"] = frame["baseline"].astype(bool)  # an empty object column would index as labels
    for col in ("best_epoch", "epochs_run"):
        frame[col] = frame[col].astype("Int64")
    return frame


def _history(client: MlflowClient, run_id: str, key: str) -> pd.Series:
    points = client.get_metric_history(run_id, key)
    # A step logged twice (a retried report) keeps its latest value.
    points = sorted(points, key=lambda m: (m.step, m.timestamp))
    values = {m.step: m.value for m in points if math.isfinite(m.value)}
    return pd.Series(values, dtype=float, name=key).rename_axis("epoch")


def _latest_per_trial(runs: list[Run]) -> list[Run]:
    # A trial restarted on --resume logs a second run under the same trial id: the later one counts.
    latest: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):
        latest[run.data.tags.get(tag.TRIAL_ID) or run.info.run_id] = run
    return list(latest.values())


def _all_runs(client: MlflowClient, exp, role: str, extra: str = "") -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [exp.experiment_id],
            f"tags.`{tag.ROLE}` = '{role}'{extra}",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=_PAGE,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _experiment(client: MlflowClient, name: str):
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage != "active":
        known = sorted(e.name for e in _all_experiments(client))
        raise UsageError(
            f"no experiment {name!r} in the tracking store {client.tracking_uri}"
            + (f"; experiments: {', '.join(known)}" if known else "")
        )
    return exp


def _all_experiments(client: MlflowClient) -> list:
    experiments, token = [], None
    while True:
        page = client.search_experiments(max_results=_PAGE, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            return experiments


def _local_store_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db: the path follows the third slash.
        return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if parsed.scheme in ("", "file"):
        return Path(parsed.path)
    return None


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def _time(ms: int | None) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC") if ms else pd.NaT
