"""How well a search's first rung ranked its trials, measured against where they ended.

ASHA's first rung (report `grace_period`) is worth stopping trials at only if the order it puts
trials in is the order they end in. The search's own rule (search/stopping.py) measures each
rung against the next checkpoint while it runs; this is the after-the-fact measure against the
end: for the trials that trained to their own end, Spearman's rank correlation of each trial's
value at the first rung with its value at its last report. docs/search-design.md quotes it per
task to choose the spaces' grace periods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hpsearch.plumbing.ranks import rank_correlation
from hpsearch.reports.runs import SearchRuns

MIN_TRIALS = 3  # fewer pairs than this have no meaningful rank correlation


@dataclass(frozen=True)
class RungCheck:
    rung: int  # the report the first rung sits at
    trials: int  # finished trials that reported past it
    rho: float | None  # None: fewer than MIN_TRIALS trials, or every value tied


def first_rung_against_last(runs: SearchRuns) -> RungCheck:
    """Spearman's rho of the finished trials' first-rung values against their last reports'."""
    rung = int(runs.parent.data.params.get("grace_period", "1"))
    at_rung, at_end = [], []
    for run_id in runs.finished()["run_id"]:
        history = runs.histories.get(run_id)
        if history is None or rung not in history.index or history.index.max() <= rung:
            continue
        at_rung.append(history[rung])
        at_end.append(history[history.index.max()])
    if len(at_rung) < MIN_TRIALS:
        return RungCheck(rung, len(at_rung), None)
    rho = rank_correlation(at_rung, at_end)
    return RungCheck(rung, len(at_rung), None if math.isnan(rho) else rho)


def rung_line(runs: SearchRuns) -> str:
    """One line for the leaderboard: the first rung's rank correlation with the end."""
    check = first_rung_against_last(runs)
    where = f"{runs.report_unit} {check.rung} against each trial's last {runs.report_unit}"
    if check.rho is None:
        return f"{where}: not measured ({check.trials} finished trials reported past it)"
    return f"{where}: Spearman rho {check.rho:+.2f} over {check.trials} trials trained to their end"
