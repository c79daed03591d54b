"""Reused workers: a worker process runs trial after trial, and nothing leaks from one to the next."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import ray.cloudpickle
import torch

from hpsearch.search.settings import SearchSettings
from hpsearch.search.space import load_space
from hpsearch.search.trainable import run_trial
from hpsearch.search.tuner import build_tuner
from tests.search_helpers import TINY_SPACE, tiny_data

ONE_POINT_SPACE = (
    TINY_SPACE.split("def space(trial):")[0]
    + """
def space(trial):
    trial.suggest_categorical("lr", [1e-3])  # every trial is the baseline's config
"""
)


def messy_trial(params, **kwargs):
    """The real trial, then junk left behind in the worker: threads, seeds, a stray tensor."""
    marks = Path(MARKS[0])
    (marks / f"{os.getpid()}-{len(list(marks.iterdir()))}").touch()
    run_trial(params, **kwargs)
    torch.set_num_threads(1 + torch.get_num_threads() % 2)
    torch.manual_seed(12345)
    globals().setdefault("junk", []).append(torch.randn(1000))


MARKS: list[str] = []  # set by the test; shipped to the worker with the function, by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.mark.slow
def test_trials_in_one_reused_worker_train_exactly_alike(ray_session, tmp_path, monkeypatch):
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setattr(sys.modules[__name__], "MARKS", [str(marks)])
    space_path = tmp_path / "one.py"
    space_path.write_text(ONE_POINT_SPACE)
    space = load_space(space_path)
    # Two CPUs a trial on the session's 2-CPU Ray: one trial at a time.
    settings = SearchSettings(trials=3, max_epochs=2, cpus_per_trial=2, grace_period=2)
    results = build_tuner(
        space, settings, tiny_data(), tmp_path / "res" / "reuse", trial_fn=messy_trial
    ).fit()
    pids = {name.split("-")[0] for name in os.listdir(marks)}
    assert len(os.listdir(marks)) == 3 and len(pids) == 1, "the trials did not share one worker"
    histories = [
        r.metrics_dataframe[["val_acc", "val_loss", "train_loss", "lr"]].values.tolist()
        for r in sorted(results, key=lambda r: r.metrics["trial_id"])
    ]
    # One config, three trials one after another in one worker, each after the last one's junk.
    assert histories[0] == histories[1] == histories[2]
