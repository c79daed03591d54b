"""A compact live view of a search, in place of Ray Tune's pages of trial tables.

One status line (trials done / running / pruned / failed, best so far, elapsed vs budget),
redrawn in place on a terminal and printed once per finished trial anywhere else (CI, logs).
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live

from hpsearch.search.interrupt import search_stopping
from hpsearch.trainables.fates import FAILED, FINISHED_FATES, PRUNED, best_value, trial_fate


class LiveView(Callback):
    def __init__(
        self,
        metric: str,
        mode: str,
        planned_trials: int | None,
        time_budget_s: float | None,
        budget_s: float | None = None,  # one trial's, for telling budget stops from ASHA's
    ) -> None:
        self.metric, self.mode, self.budget_s = metric, mode, budget_s
        self.planned, self.time_budget_s = planned_trials, time_budget_s
        self.best: tuple[float, str] | None = None  # among finished trials only
        self.fates: dict[str, str] = {}
        self._reported: dict[str, list[float]] = {}  # trial id -> its metric, report by report
        self.running = 0
        self._start = time.monotonic()
        self._console: Console | None = None
        self._live: Live | None = None
        self._last_draw = 0.0

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks with the search for --resume; a console holds locks and files.
        return {**self.__dict__, "_console": None, "_live": None}

    def setup(self, **info: Any) -> None:
        self._start = time.monotonic()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._reported.setdefault(trial.trial_id, []).append(result.get(self.metric))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        fate = trial_fate(trial.last_result, error=False, budget_s=self.budget_s, stopping=search_stopping())
        self.fates[trial.trial_id] = fate
        # Ranked as everywhere else: a finished trial by its best report. A pruned trial's lucky
        # early report is never the search's best (trainables/fates.py).
        value = best_value(self._reported.pop(trial.trial_id, []), self.mode)
        if (
            fate in FINISHED_FATES
            and value is not None
            and (self.best is None or self._better(value, self.best[0]))
        ):
            self.best = (value, trial.trial_id)
        self._print_line()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.fates[trial.trial_id] = FAILED
        self._print_line()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.running = sum(t.status == "RUNNING" for t in trials)
        if self.console.is_terminal and time.monotonic() - self._last_draw > 0.5:
            self._last_draw = time.monotonic()
            if self._live is None:
                self._live = Live(self.status(), console=self.console, auto_refresh=False, transient=True)
                self._live.start()
            self._live.update(self.status(), refresh=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = Console(stderr=True)
        return self._console

    def status(self) -> str:
        fates = list(self.fates.values())
        planned = f"/{self.planned}" if self.planned else ""
        elapsed = time.monotonic() - self._start
        budget = f" / {_clock(self.time_budget_s)}" if self.time_budget_s else ""
        best = f"best {self.metric} {self.best[0]:.4f} ({self.best[1]})" if self.best else "no result yet"
        return (
            f"trials {len(fates)}{planned} done ({fates.count(PRUNED)} pruned, {fates.count(FAILED)} failed),"
            f" {self.running} running | {best} | {_clock(elapsed)}{budget}"
        )

    def _print_line(self) -> None:
        if not self.console.is_terminal:
            self.console.print(self.status(), highlight=False, soft_wrap=True)

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"
