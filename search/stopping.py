"""The search's early-stopping rule: which trials go on at each rung.

One function builds it, so the search (search/tuner.py) and the simulated benchmark run the
very same rule.

Plain ASHA trusts every rung: a trial below the top 1/eta of its rung stops. On LCBench the
first epochs often rank trials badly (slow starters end best; the rank correlation of epoch 1
with epoch 52 is near zero or negative on half the tasks), so ASHA with a grace period of one
epoch stopped the eventual winners and lost to TPE with no stopping at all
(benchmarks/simulated_search.py). Here each rung earns the right to stop trials: it stops
nothing until it has seen, on the trials that went on, that its ranking agrees with the next
checkpoint's (Spearman's rho), and it stops again only while that stays true.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, TrialScheduler

from hpsearch.plumbing.ranks import rank_correlation
from hpsearch.search.settings import SearchSettings

# A rung stops trials only if it ranks them at least this like the next checkpoint does. At 0.7
# the rule lost to TPE without stopping at 100x max_t on LCBench; 0.9 does not (search-design.md).
MIN_RANK_CORR = 0.9
MIN_PAIRS = 8  # trials seen at both checkpoints before a rung's correlation is believed
MEASURING, PRUNING, OFF = "measuring", "pruning", "off"


class RankCheckedASHA(FIFOScheduler):
    """Asynchronous successive halving whose rungs stop trials only where they rank them well.

    Rungs sit at ``grace_period * reduction_factor**k`` below ``max_t``; each rung is checked
    against the next rung up (the top one against ``max_t``). ``rule()`` says which rungs stop
    trials and the rank correlation each one measured.
    """

    def __init__(
        self,
        *,
        max_t: int,
        grace_period: int,
        reduction_factor: float,
        time_attr: str = "training_iteration",
        metric: str | None = None,
        mode: str | None = None,
        min_rank_corr: float = MIN_RANK_CORR,
        min_pairs: int = MIN_PAIRS,
    ) -> None:
        super().__init__()
        self._metric, self._mode, self._time_attr = metric, mode, time_attr
        self.max_t, self.eta = max_t, reduction_factor
        self.min_rank_corr, self.min_pairs = min_rank_corr, min_pairs
        rungs, r = [], max(1, grace_period)
        while r < max_t:
            rungs.append(int(r))
            r = int(round(r * reduction_factor)) if r * reduction_factor > r + 0.5 else r + 1
        self.rungs = rungs
        self.checkpoints = rungs + [max_t]  # each rung's reference is the next checkpoint
        self.values: dict[str, dict[int, float]] = {}  # trial -> checkpoint -> signed metric
        self.at: dict[int, list[float]] = {r: [] for r in self.checkpoints}  # every value seen there
        self.rho: dict[int, float] = {}  # rung -> latest measured rank correlation
        self.pairs: dict[int, list[tuple[float, float]]] = {r: [] for r in rungs}  # (rung, next)
        self.stopped: dict[int, int] = dict.fromkeys(rungs, 0)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if self._metric and metric or self._mode and mode:
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def state(self, rung: int) -> str:
        if len(self.pairs[rung]) < self.min_pairs:
            return MEASURING
        return PRUNING if self.rho[rung] >= self.min_rank_corr else OFF

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        t = result[self._time_attr]
        if t >= self.max_t:
            self._record(trial.trial_id, self.max_t, result[self._metric])
            return TrialScheduler.STOP
        if t not in self.rungs or t in self.values.get(trial.trial_id, {}):
            return TrialScheduler.CONTINUE
        value = self._record(trial.trial_id, t, result[self._metric])
        # A rung still measuring lets every trial on: those trials are its evidence.
        if self.state(t) != PRUNING:
            return TrialScheduler.CONTINUE
        if value < np.percentile(self.at[t], (1 - 1 / self.eta) * 100):
            self.stopped[t] += 1
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        # A trial whose horizon its budget shortened ends on its own before the next checkpoint:
        # its last value stands in for that checkpoint's, or the rung below would never get the
        # evidence it waits for (a search of slow trials would never stop any).
        seen = self.values.get(trial.trial_id, {})
        ended_itself = (result or {}).get("stopped") in ("completed", "budget")
        if seen and ended_itself and self._metric in result:
            last = max(seen)
            if last < self.max_t and result.get(self._time_attr, 0) > last:
                self._record(
                    trial.trial_id, self.checkpoints[self.checkpoints.index(last) + 1], result[self._metric]
                )

    def rule(self) -> str:
        """Which rungs stop trials and why, in one line for the search's report."""
        parts = []
        for rung, ref in zip(self.rungs, self.checkpoints[1:], strict=True):
            rho = f"rho={self.rho[rung]:+.2f}" if rung in self.rho else "rho=n/a"
            parts.append(
                f"report {rung} vs {ref}: {rho} on {len(self.pairs[rung])} trials, {self.state(rung)}"
                f" ({self.stopped[rung]} stopped)"
            )
        head = f"rank-checked ASHA (eta {self.eta:g}, stops where rho >= {self.min_rank_corr:g}"
        return head + f" on >= {self.min_pairs} trials): " + "; ".join(parts)

    def debug_string(self) -> str:
        return self.rule()

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    def _record(self, trial_id: str, t: int, value: float) -> float:
        signed = value if self._mode == "max" else -value
        seen = self.values.setdefault(trial_id, {})
        seen[t] = signed
        self.at[t].append(signed)
        below = self.checkpoints.index(t) - 1
        rung = self.checkpoints[below] if below >= 0 else None
        if rung in seen:  # a new pair for the rung below: re-measure its correlation
            pairs = self.pairs[rung]
            pairs.append((seen[rung], signed))
            if len(pairs) >= 3:
                rho = rank_correlation(*zip(*pairs, strict=True))
                self.rho[rung] = float(rho) if np.isfinite(rho) else 0.0
        return signed


# --scheduler: the rule that stops trials early. rank-asha is ours (above); asha and hyperband
# are Ray's stock schedulers on the same rungs, for comparison; fifo stops no trial.
SCHEDULERS = ("rank-asha", "asha", "hyperband", "fifo")


def make_scheduler(settings: SearchSettings) -> TrialScheduler:
    """The search's early-stopping rule, ``settings.scheduler``; rungs count reports (epochs, or
    fractions of one), up to the horizon ``settings.max_t``."""
    grace = min(settings.grace_period, settings.max_t)
    if settings.scheduler == "rank-asha":
        return RankCheckedASHA(
            time_attr="training_iteration",
            max_t=settings.max_t,
            grace_period=grace,
            reduction_factor=settings.reduction_factor,
        )
    if settings.scheduler == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=settings.max_t,
            grace_period=grace,
            reduction_factor=settings.reduction_factor,
        )
    if settings.scheduler == "hyperband":
        # No grace period: its brackets' rungs come from max_t and eta. It fills its brackets with
        # the trials running at once, the first (no rung, round(log_eta max_t) + 1 trials) before
        # any other, so it stops nothing unless more trials than that run at once; and a trial it
        # pauses at a rung starts over when it goes on unless it checkpoints (--max-failures).
        return HyperBandScheduler(
            time_attr="training_iteration", max_t=settings.max_t, reduction_factor=settings.reduction_factor
        )
    if settings.scheduler == "fifo":
        return FIFOScheduler()
    raise ValueError(f"unknown scheduler {settings.scheduler!r}; known: {', '.join(SCHEDULERS)}")


def stopping_rule(scheduler: TrialScheduler | None) -> str | None:
    """What ``scheduler`` did, in one line for the search's report; None if there is none."""
    if scheduler is None:
        return None
    if isinstance(scheduler, RankCheckedASHA):
        return scheduler.rule()
    if type(scheduler) is FIFOScheduler:
        return "none (fifo): every trial runs to its own end or its budget"
    # Ray's stock schedulers give their own account (how many they stopped, their rungs' cut-offs
    # or their brackets), over several lines: here on one.
    return " ".join(scheduler.debug_string().split())
