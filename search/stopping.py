"""The search's early-stopping rule: which trials go on at each rung.

One function builds it, so the search (search/tuner.py) and the simulated benchmark run the
very same rule.
"""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler

from search.settings import SearchSettings


def make_scheduler(settings: SearchSettings) -> ASHAScheduler:
    """ASHA over the search's rungs."""
    return ASHAScheduler(
        time_attr="training_iteration",  # one report per epoch, so rungs are in epochs
        max_t=settings.max_epochs,
        grace_period=min(settings.grace_period, settings.max_epochs),
        reduction_factor=settings.reduction_factor,
    )
