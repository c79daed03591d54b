"""Spearman's rank correlation, the one statistic the scheduler (search/stopping.py) and the reports
(reports/rungs.py) share: here, so that neither package imports the other for it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho: the correlation of the ranks (ties share their mean rank); NaN if all tie.

    As pandas computes it (``Series.rank().corr(...)``): each side ranked without its NaNs, the
    correlation over the pairs where neither is NaN."""
    ranks_a, ranks_b = _ranks(a), _ranks(b)
    both = ~(np.isnan(ranks_a) | np.isnan(ranks_b))
    if both.sum() < 2:
        return float("nan")
    x, y = ranks_a[both] - ranks_a[both].mean(), ranks_b[both] - ranks_b[both].mean()
    scale = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / scale) if scale > 0 else float("nan")


def _ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, a tie's the mean of its places; NaN stays NaN."""
    v = np.asarray(values, dtype=float)
    ranks = np.full(v.shape, np.nan)
    present = ~np.isnan(v)
    _, inverse, counts = np.unique(v[present], return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # the place of each distinct value's last copy
    ranks[present] = (last - (counts - 1) / 2)[inverse]
    return ranks
