"""How a trial ended (its fate) and the one number it is ranked by: one home for both.

The loop names its own ends (completed, budget, diverged); the search adds the ends that come
from outside a trial (pruned by the scheduler, failed with an error). Every place that ranks
trials (the searcher's tell to Optuna, the live view, the leaderboard, the export) ranks
**finished** trials by their **best report**, the weights the trial keeps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

COMPLETED, BUDGET, DIVERGED = "completed", "budget", "diverged"  # the loop's own ends
PRUNED, FAILED = "pruned", "failed"  # ended from outside: the scheduler, an error
STOPPED = "stopped"  # ended from outside by the search itself: its time budget, or Ctrl-C
RUNNING = "running"  # a trial not ended yet (or still running when the search was stopped)

FINISHED_FATES = (COMPLETED, BUDGET)  # trained to their own end: comparable, rankable
LOOP_FATES = (COMPLETED, BUDGET, DIVERGED)


def trial_fate(
    last_result: dict[str, Any] | None, error: bool, budget_s: float | None = None, stopping: bool = False
) -> str:
    """How a trial ended, from its last report; ``budget_s`` is Tune's per-trial stop time, and
    ``stopping`` says the search as a whole was stopping (search/interrupt.py)."""
    if error:
        return FAILED
    last = last_result or {}
    if "training_iteration" not in last:
        # Never reported (stopped while pending: the search's end, a resume): the scheduler
        # judges reports, so this is no pruning, and no evidence about its config.
        return STOPPED
    if last.get("stopped") in LOOP_FATES:
        return last["stopped"]
    # No `stopped` on the last report: something outside the trial ended it, either the
    # budget stopper (Tune's safety net past the trial budget) or the scheduler.
    if budget_s is not None and last.get("time_total_s", 0) >= budget_s:
        return BUDGET
    return STOPPED if stopping else PRUNED


def best_value(values: Iterable[Any], mode: str) -> float | None:
    """A trial's score: the best finite value it reported (its kept weights), or None."""
    finite = [float(v) for v in values if is_number(v)]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
