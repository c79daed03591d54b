"""Chance level: what a classifier that learned nothing scores, and the highest score still counted as it."""

from __future__ import annotations

# A model that learned nothing predicts one class, or noise: 1/classes on a balanced validation
# set, give or take sampling noise and a slight class imbalance. 1.5x chance leaves room for
# those (its margin, 0.5x chance, is at least two standard deviations of that noise on the seed
# tasks' validation sets: 0.0096 against 0.0048 for 52-class font on its 832 quick-search
# images), while a trial that learned anything scores many times chance. With few classes 1.5x
# would swallow real learning (0.75 on a two-class task), so the margin is capped at 5 points.
CHANCE_FACTOR = 1.5
MAX_MARGIN = 0.05


def chance_level(task_name: str | None) -> float | None:
    """1/classes of a registered task; None for a task this code does not know."""
    from hpsearch.trainables.tasks import TASKS  # torch-heavy: imported only when a report asks

    task = TASKS.get(task_name or "")
    return None if task is None else 1.0 / task.num_classes


def chance_ceiling(chance: float) -> float:
    """The highest accuracy still counted as chance."""
    return min(CHANCE_FACTOR * chance, chance + MAX_MARGIN)
