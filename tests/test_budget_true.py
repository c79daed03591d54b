"""Budget-true trials: every trial trains over the search's horizon, so ASHA compares like with like.

Short-horizon bias: when the lr schedule is keyed to a searched epoch count, a short schedule has
already decayed at an early rung and looks better than a long one there (docs/search-design.md).
"""

from __future__ import annotations

import pytest

import hpsearch.search.trainable
import hpsearch.search.tuner
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.settings import SearchSettings
from hpsearch.search.space import load_space
from hpsearch.search.stopping import RankCheckedASHA
from hpsearch.search.summary import trials_frame
from hpsearch.search.trainable import run_trial
from hpsearch.search.tuner import build_tuner
from tests.search_helpers import TINY_SPACE, tiny_data, write_tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reports_of(monkeypatch, baseline: dict, settings: SearchSettings) -> list[dict]:
    reports = []
    monkeypatch.setattr(hpsearch.search.trainable.tune, "report", lambda m, **_: reports.append(m))
    run_trial({}, data=tiny_data(), task_name="mnist", baseline=baseline, settings=settings)
    return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in reports]  # all but times


def test_configs_differing_only_in_epochs_train_alike_in_a_search(tmp_path, monkeypatch):
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(max_epochs=2, reports_per_epoch=2, trial_budget_s=600)
    short = reports_of(monkeypatch, {**space.baseline, "epochs": 1, "schedule": "cosine"}, settings)
    long = reports_of(monkeypatch, {**space.baseline, "epochs": 30, "schedule": "cosine"}, settings)
    # Same values at ASHA's first rung and at every later one: the horizon is the search's.
    assert [r["val_acc"] for r in short] == [r["val_acc"] for r in long]
    assert short == long
    # Reports at the first batch (of 32 of 1,000 images) past each half epoch.
    assert [r["epochs_done"] for r in short] == pytest.approx([0.5, 1.0, 1.5, 2.0], abs=0.032)
    assert short[-1]["horizon_epochs"] == 2 and short[-1]["stopped"] == "completed"


def test_a_space_that_searches_epochs_is_refused(tmp_path):
    path = tmp_path / "epochs.py"
    path.write_text(TINY_SPACE + '    trial.suggest_int("epochs", 1, 5)\n')
    with pytest.raises(UsageError, match="suggests 'epochs'"):
        load_space(path)


def test_a_space_with_an_unknown_key_fails_on_the_driver(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text(TINY_SPACE + '    trial.suggest_float("learning_rate", 1e-4, 1e-2)\n')
    with pytest.raises(UsageError, match="unknown config key 'learning_rate'"):
        load_space(path)


@pytest.mark.slow
def test_asha_prunes_inside_the_first_epoch_with_sub_epoch_rungs(ray_session, tmp_path, monkeypatch):
    space = load_space(write_tiny_space(tmp_path))
    # One epoch, reported at quarters: rungs at 1 and 3 quarter-epochs.
    settings = SearchSettings(
        trials=16, max_epochs=1, reports_per_epoch=4, trial_budget_s=60, cpus_per_trial=1
    )
    # Whether a tiny search's first rung ranks well enough to stop trials is chance (the rule
    # has its own tests in test_simulate.py). Here every rung stops trials once it has 3 pairs:
    # what is tested is that the rungs sit inside the first epoch and stop trials there.
    trusting = RankCheckedASHA(
        max_t=settings.max_t, grace_period=1, reduction_factor=3, min_rank_corr=-1.0, min_pairs=3
    )
    monkeypatch.setattr(hpsearch.search.tuner, "make_scheduler", lambda _settings: trusting)
    results = build_tuner(space, settings, tiny_data(), tmp_path / "results" / "quarters").fit()
    frame = trials_frame(results, space, settings)
    pruned = frame[frame["fate"] == "pruned"]
    assert len(pruned), "ASHA stopped no trial"
    for result in results:
        history = result.metrics_dataframe
        if result.metrics["trial_id"] in set(pruned["trial_id"]):
            assert history["epochs_done"].max() < 1.0  # stopped inside the first epoch
    finished = frame[frame["fate"] == "completed"]
    assert (finished["epochs_run"] == settings.max_t).all()
