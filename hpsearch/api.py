"""The search as a Python call: ``hpsearch.run_search("font", trials=8, gpus=0)``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hpsearch.plumbing.errors import UsageError
from hpsearch.search import run
from hpsearch.search.interrupt import interrupted
from hpsearch.search.summary import top_finished, trials_frame


@dataclass(frozen=True)
class SearchResult:
    """What a search found: its best finished trial and every trial's row."""

    best_config: dict[str, Any] | None  # the best trial's whole config (None: no trial finished)
    best_metric: float | None  # its best report's value of ``metric``
    best_trial: str | None  # its Tune trial id
    metric: str  # the space's metric, e.g. val_acc
    mode: str  # "max" or "min"
    trials: pd.DataFrame  # a row per trial, best first (results/<name>/trials.csv)
    experiment_dir: Path  # results/<name>: trials.csv, best.json, report/, the Optuna study
    interrupted: bool  # cut short by Ctrl-C: continue with run_search(space, name=..., resume=True)

    @property
    def name(self) -> str:
        """The search's name: ``--name`` for the other commands (report, export, ...)."""
        return self.experiment_dir.name


def run_search(space: str | Path, **options: Any) -> SearchResult:
    """Run a search as ``hpsearch run`` does, and return what it found.

    ``space`` is a space file or a built-in space's name (``"font"``). ``options`` are the
    command's options by their Python names, with the command's defaults for the others:
    ``trials=8``, ``gpus=0``, ``trial_budget=120``, ``quick=True``, ``data_dir="data"``,
    ``results_dir=...``, ``name=...``, ``tracking_uri=...``; ``hpsearch run --help`` lists them
    all. An unknown option, or a value the command would refuse, raises
    :class:`hpsearch.plumbing.errors.UsageError` before anything starts.

    It writes and logs all the command does (results/<name>/, the MLflow runs, the leaderboard)
    and prints its progress on stderr. Without a running Ray it starts a local one, which stays
    up for the next search in this process; with one (``ray.init(...)`` first) it uses that.
    """
    args = run.parse_args(["--space", str(space)])  # the command's own defaults, in one place
    known = sorted(vars(args).keys() - {"space"})
    unknown = sorted(options.keys() - set(known))
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for key, value in options.items():
        # As the command's parser types them (run.py's Path options are its *_dir ones).
        setattr(args, key, Path(value) if key.endswith("_dir") and value is not None else value)
    job = run.set_up(args, ["--space", str(space), *_flags(options)])
    results = run.fit(job)
    code = run.finish(job, results)
    if code:
        raise RuntimeError(f"the search in {job.experiment_dir} ended with exit code {code}")
    frame = trials_frame(results, job.space, job.settings)  # as finish() wrote it to trials.csv
    best = top_finished(frame, 1)
    row = best.iloc[0] if len(best) else None
    return SearchResult(
        best_config=None if row is None else _config(row),
        best_metric=None if row is None else float(row[job.space.metric]),
        best_trial=None if row is None else str(row["trial_id"]),
        metric=job.space.metric,
        mode=job.space.mode,
        trials=frame,
        experiment_dir=job.experiment_dir,
        interrupted=interrupted(),
    )


def _flags(options: dict[str, Any]) -> list[str]:
    # The command line these options stand for: the search's MLflow run records it (hpsearch.command)
    # so that it can be run again, and --resume refuses a setting given anew that differs.
    flags: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not None and value is not False:
            flags += [flag, str(value)]
    return flags


def _config(row: pd.Series) -> dict[str, Any]:
    return {
        key.removeprefix("config/"): value.item() if hasattr(value, "item") else value
        for key, value in row.items()
        if key.startswith("config/")
    }
