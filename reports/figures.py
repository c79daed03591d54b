"""The report's figures, drawn with matplotlib's Agg canvas into PNG files.

Figures are built on `matplotlib.figure.Figure`, not pyplot: no global backend or figure
state, so the search process that calls the report keeps whatever matplotlib setup it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hpsearch.reports.runs import FINISHED_FATES, SearchRuns
from hpsearch.reports.study import Importances

FATE_COLORS = {
    "completed": "tab:green",
    "budget": "tab:blue",
    "pruned": "tab:gray",
    "diverged": "tab:orange",
    "failed": "tab:red",
    "running": "tab:purple",
}
FILES = ("learning_curves.png", "best_so_far.png", "param_importance.png", "metric_vs_time.png")
CURVES = 5  # learning curves drawn besides the baseline's
MAX_BARS = 15
SIZE, DPI = (7.0, 4.2), 110


@dataclass(frozen=True)
class Plot:
    """One figure of the report: its file, or the note saying why it was not drawn."""

    title: str
    path: Path | None
    note: str = ""


def make_figures(runs: SearchRuns, importances: Importances, out_dir: Path) -> list[Plot]:
    plots = [
        learning_curves(runs, out_dir / FILES[0]),
        best_so_far(runs, out_dir / FILES[1]),
        importance(importances, out_dir / FILES[2]),
        metric_vs_time(runs, out_dir / FILES[3]),
    ]
    for name, plot in zip(FILES, plots, strict=True):
        if plot.path is None:
            (out_dir / name).unlink(missing_ok=True)  # an earlier report's figure would mislead
    return plots


def learning_curves(runs: SearchRuns, path: Path) -> Plot:
    title = f"Learning curves: the top {CURVES} finished trials and the baseline"
    top = runs.finished().head(CURVES)
    baseline = runs.trials[runs.trials["baseline"]]
    shown = pd.concat([top, baseline[~baseline["run_id"].isin(top["run_id"])]])
    shown = shown[shown["run_id"].map(lambda r: len(runs.histories.get(r, ())) > 0).astype(bool)]
    if shown.empty:
        return Plot(title, None, "no finished trial or baseline has a metric history yet")
    fig, ax = _figure()
    for _, trial in shown.iterrows():
        history = runs.histories[trial["run_id"]]
        label = f"{trial['trial_id']} ({trial['fate']}, best {trial['best']:.4f})"
        if trial["baseline"]:
            ax.plot(history.index, history.values, "k--", lw=2.2, marker="o", ms=3, label="baseline " + label)
        else:
            ax.plot(history.index, history.values, lw=1.5, marker="o", ms=3, label=label)
    ax.set(xlabel="epoch", ylabel=runs.metric, title=f"{runs.search}: {runs.metric} per epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, loc="lower right" if runs.mode == "max" else "upper right")
    return _save(fig, path, title)


def best_so_far(runs: SearchRuns, path: Path) -> Plot:
    title = "Best finished trial so far against the search's wall time"
    trials = runs.trials.dropna(subset=["best", "end"])
    if trials.empty:
        return Plot(title, None, "no trial has ended with a metric yet")
    minutes = (trials["end"] - runs.started).dt.total_seconds() / 60
    fig, ax = _figure()
    for fate, group in trials.groupby("fate"):
        ax.scatter(minutes[group.index], group["best"], s=18, c=FATE_COLORS.get(fate, "k"), label=fate)
    finished = trials[trials["fate"].isin(FINISHED_FATES)].assign(minutes=minutes).sort_values("minutes")
    if len(finished):
        best = finished["best"].cummax() if runs.mode == "max" else finished["best"].cummin()
        x = [*finished["minutes"], minutes.max()]  # hold the last best to the search's end
        ax.step(x, [*best, best.iloc[-1]], where="post", color="k", lw=1.5, label="best finished so far")
    ax.set(
        xlabel="minutes since the search started",
        ylabel=f"trial's best {runs.metric}",
        title=f"{runs.search}: each trial's best at its end time",
    )
    ax.legend(fontsize=7)
    return _save(fig, path, title)


def importance(importances: Importances, path: Path) -> Plot:
    title = "Hyperparameter importance (Optuna study, trials trained to their own end only)"
    if not importances.values:
        return Plot(title, None, importances.note)
    items = list(importances.values.items())[:MAX_BARS][::-1]  # largest at the top
    fig, ax = _figure()
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.set(
        xlabel="share of the explained variance of the objective",
        title=f"{importances.evaluator} from {importances.completed_trials} trials trained to their own end",
    )
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, path, title)


def metric_vs_time(runs: SearchRuns, path: Path) -> Plot:
    title = f"Best {runs.metric} against training time, by fate"
    trials = runs.trials.dropna(subset=["best", "train_time_s"])
    if trials.empty:
        return Plot(title, None, "no trial has both a metric and a training time")
    fig, ax = _figure()
    for fate, group in trials.groupby("fate"):
        ax.scatter(group["train_time_s"], group["best"], s=22, c=FATE_COLORS.get(fate, "k"), label=fate)
    baseline = trials[trials["baseline"]]
    if len(baseline):
        ax.scatter(
            baseline["train_time_s"],
            baseline["best"],
            s=120,
            facecolors="none",
            edgecolors="k",
            label="baseline",
        )
    ax.set(
        xlabel="training time, s",
        ylabel=f"best {runs.metric}",
        title=f"{runs.search}: {runs.metric} against cost",
    )
    ax.legend(fontsize=7)
    return _save(fig, path, title)


def _figure():
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig: Figure, path: Path, title: str) -> Plot:
    fig.savefig(path, format="png")
    return Plot(title, path)
