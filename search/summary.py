"""A finished (or interrupted) search as one table: a row per trial, its fate and best epoch."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
from ray.tune import ResultGrid

from hpsearch.search.interrupt import ended_by_the_stop
from hpsearch.search.settings import SearchSettings
from hpsearch.search.space import Space
from hpsearch.trainables.fates import FAILED, FINISHED_FATES, trial_fate


def trials_frame(results: ResultGrid, space: Space, settings: SearchSettings) -> pd.DataFrame:
    baseline = settings.trial_config(space.task, space.baseline, {})
    budget_s = settings.stopper_budget_s
    rows: list[dict[str, Any]] = []
    for result in results:
        history = result.metrics_dataframe
        trial_id = trial_id_of(result)
        config = settings.trial_config(space.task, space.baseline, result.config or {})
        row = {
            "trial_id": trial_id,
            "fate": FAILED
            if result.error
            else trial_fate(result.metrics, False, budget_s, stopping=ended_by_the_stop(trial_id)),
            # A trial that never started has no config yet: not the baseline, whose defaults it shows.
            "baseline": bool(result.config) and config == baseline,
            "error": error_line(result.error) if result.error else "",
        }
        if history is not None and space.metric in history:
            best = history[space.metric].idxmax() if space.mode == "max" else history[space.metric].idxmin()
            row.update(
                {
                    space.metric: history[space.metric][best],
                    "best_epoch": int(history["epoch"][best]),
                    "epochs_run": int(history["epoch"].max()),
                    "train_time_s": float(history["time_total_s"].max()),
                }
            )
        rows.append({**row, **{f"config/{k}": v for k, v in config.items()}})
    frame = pd.DataFrame(rows)
    if space.metric in frame:
        # Ties go to the faster trial, as the leaderboard and the export rank (reports/runs.py).
        frame = frame.sort_values(
            [space.metric, "train_time_s"], ascending=[space.mode == "min", True], na_position="last"
        )
    return frame.reset_index(drop=True)


def trial_id_of(result: Any) -> str:
    """A result's trial id: its last report's, or (a trial that never reported) from its folder,
    ``<trainable>_<trial id>_<n>_<params>_<date>_<time>``, where Tune's ids are 8 hex digits."""
    reported = (result.metrics or {}).get("trial_id")
    if reported:
        return reported
    parts = Path(result.path).name.split("_")
    return next((part for part in parts if re.fullmatch(r"[0-9a-f]{8}", part)), Path(result.path).name)


def error_line(error: BaseException) -> str:
    """The trial's own error in one line, not Ray's `ray::ImplicitFunc.train()` wrapper."""
    cause = getattr(error, "cause", None) or error
    lines = str(cause).strip().splitlines() or [""]
    return f"{type(cause).__name__}: {lines[-1]}"[:200]


def top_finished(frame: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    return frame[frame["fate"].isin(FINISHED_FATES)].head(k)
