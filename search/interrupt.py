"""Why a search is stopping: Ctrl-C, or its own time budget. One flag for the whole driver.

Tune catches Ctrl-C itself, stops the trials and keeps the search resumable; it only does not
tell anyone. ``StopWatch`` (a Tune callback) wraps Tune's handler to note the interrupt, so the
command can exit 130 and trials ended by the stop are labelled ``stopped``, not ``pruned``.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from ray.tune import Callback

_state: dict[str, Any] = {"interrupted": False, "started": None, "time_budget_s": None, "stopped": set()}


class StopWatch(Callback):
    def __init__(self, time_budget_s: float | None) -> None:
        self.time_budget_s = time_budget_s

    def setup(self, **info: Any) -> None:
        # Tune set its SIGINT handler before its callbacks' setup: note the interrupt, then let
        # Tune's handler do its work (it restores the default one, so a second Ctrl-C quits).
        _state.update(
            interrupted=False, started=time.monotonic(), time_budget_s=self.time_budget_s, stopped=set()
        )
        if threading.current_thread() is not threading.main_thread():
            return
        tune_handler = signal.getsignal(signal.SIGINT)

        def note(signum: int, frame: Any) -> None:
            _state["interrupted"] = True
            if callable(tune_handler):
                tune_handler(signum, frame)

        signal.signal(signal.SIGINT, note)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if search_stopping():
            _state["stopped"].add(trial.trial_id)


def interrupted() -> bool:
    return bool(_state["interrupted"])


def search_stopping() -> bool:
    """True once the search as a whole is stopping: Ctrl-C, or its time budget spent."""
    if _state["interrupted"]:
        return True
    started, budget = _state["started"], _state["time_budget_s"]
    return bool(budget and started is not None and time.monotonic() - started >= 0.99 * budget)


def ended_by_the_stop(trial_id: str) -> bool:
    """Whether ``trial_id`` ended while the search was stopping (so not by the scheduler)."""
    return trial_id in _state["stopped"]
