"""The simulator (search/simulate.py) on a synthetic oracle, the stopping rule, and the LCBench smoke run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from hpsearch.plumbing.errors import UsageError
from hpsearch.search.searcher import make_searcher
from hpsearch.search.settings import SearchSettings
from hpsearch.search.simulate import best_so_far, simulate_optuna, simulate_ray
from hpsearch.search.space import Space
from hpsearch.search.stopping import MEASURING, OFF, PRUNING, RankCheckedASHA, make_scheduler

REPO = Path(__file__).resolve().parents[1]
MAX_T = 9


def suggest(trial: optuna.Trial) -> None:
    trial.suggest_float("x", 0.0, 1.0)


def curve(config: dict, epoch: int) -> float:
    """Learns towards x: every epoch ranks configs as the last one does."""
    return config["x"] * epoch / (epoch + 2)


def crossing(config: dict, epoch: int) -> float:
    """Epoch 1 ranks configs backwards; from epoch 3 on, as the last epoch does."""
    return 1 - config["x"] if epoch < 3 else config["x"]


def random_searcher(seed: int = 0) -> OptunaSearch:
    sampler = optuna.samplers.RandomSampler(seed=seed)
    return OptunaSearch(space=suggest, metric="score", mode="max", sampler=sampler)


def asha() -> ASHAScheduler:
    return ASHAScheduler(time_attr="training_iteration", max_t=MAX_T, grace_period=1, reduction_factor=3)


def run(scheduler, oracle=curve, *, workers: int = 2, budget: float = 120, seed: int = 0, searcher=None):
    searcher = searcher or random_searcher(seed)
    args = dict(metric="score", mode="max", max_t=MAX_T, workers=workers, budget=budget, seed=seed)
    return simulate_ray(searcher, scheduler, oracle, **args)


def test_simulate_asha_stops_trials_at_its_rungs():
    sim = run(asha())
    stopped = [t for t in sim.trials if t.ended == "stopped"]
    completed = [t for t in sim.trials if t.ended == "completed"]
    assert stopped and completed
    # ASHA's rungs with grace 1 and eta 3 below max_t 9 are epochs 1 and 3
    assert {t.epochs for t in stopped} <= {1, 3}
    assert all(t.epochs == MAX_T for t in completed)


def test_simulate_spends_exactly_the_budget_in_worker_epochs():
    sim = run(FIFOScheduler(), workers=4, budget=100)
    # Every worker is busy all the time: 100 worker-epochs are 100 reports, none after wall 25
    assert len(sim.points) == 100
    assert max(p.t for p in sim.points) == pytest.approx(25)


def test_simulate_workers_overlap_in_simulated_time():
    sim = run(FIFOScheduler(), workers=4, budget=40)
    first_epochs = [p for p in sim.points if p.epoch == 1]
    # Four trials run at once: four first epochs end together at t = 1
    assert [p.t for p in first_epochs[:4]] == [1.0] * 4
    assert len({p.trial for p in first_epochs[:4]}) == 4


def test_simulate_pruned_trials_reach_our_study_as_pruned(tmp_path):
    space = Space(Path("synthetic"), None, "score", "max", 1.0, MAX_T, {}, suggest)
    searcher = make_searcher(space, seed=0, results_dir=tmp_path, n_startup_trials=5)
    sim = run(asha(), searcher=searcher)
    states = [t.state for t in searcher._ot_study.get_trials()]
    ended = [t.ended for t in sim.trials]
    assert states.count(TrialState.PRUNED) == ended.count("stopped") > 0
    assert states.count(TrialState.COMPLETE) == ended.count("completed") > 0


def test_a_trial_stopped_before_it_reported_is_no_evidence_for_tpe(tmp_path):
    # Tune ends a trial still pending (a resumed search, the search's end) with no result at
    # all: that is no pruning of its config, and TPE must not learn from it as if it were.
    space = Space(Path("synthetic"), None, "score", "max", 1.0, MAX_T, {}, suggest)
    searcher = make_searcher(space, seed=0, results_dir=tmp_path, n_startup_trials=5)
    searcher.set_search_properties("score", "max", {})
    searcher.suggest("pending")
    searcher.suggest("ran")
    searcher.on_trial_result("ran", {"score": 0.5, "training_iteration": 1})
    searcher.on_trial_complete("pending")  # what Tune's stop_trial sends for a PENDING trial
    searcher.on_trial_complete("ran", {"score": 0.5, "training_iteration": 1})  # ASHA stopped it
    states = [t.state for t in searcher._ot_study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.PRUNED]


def test_simulate_optuna_prunes_with_optuna_pruners_on_n_workers():
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=0), pruner=pruner
    )
    sim = simulate_optuna(study, suggest, curve, max_t=MAX_T, workers=3, budget=150)
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.PRUNED) == [t.ended for t in sim.trials].count("stopped") > 0
    # pruned trials were told with their last reported epoch's value
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED]
    assert all(t.value == curve(t.params, max(t.intermediate_values)) for t in pruned)


def test_simulate_repeats_exactly_with_a_seed_and_differs_across_seeds():
    def points(seed):
        return [(p.t, p.trial, p.epoch, p.value) for p in run(asha(), seed=seed).points]

    assert points(3) == points(3)
    assert points(3) != points(4)


def test_best_so_far_is_the_running_best_at_each_budget():
    sim = run(FIFOScheduler(), workers=2, budget=40)
    at = [2, 40, 20]
    best = best_so_far(sim, at, "max")
    for budget, value in zip(at, best, strict=True):
        seen = [p.value for p in sim.points if sim.used(p.t) <= budget]
        assert value == max(seen)


def rank_checked(**kwargs) -> RankCheckedASHA:
    return RankCheckedASHA(max_t=MAX_T, grace_period=1, reduction_factor=3, **kwargs)


def test_rank_checked_rung_that_ranks_backwards_stops_nothing():
    scheduler = rank_checked()
    sim = run(scheduler, oracle=crossing, budget=400)
    assert scheduler.state(1) == OFF and scheduler.rho[1] < 0
    assert scheduler.stopped[1] == 0
    # rung 3 ranks as epoch 9 does, so it earns the right to stop trials, and uses it
    assert scheduler.state(3) == PRUNING and scheduler.stopped[3] > 0
    assert {t.epochs for t in sim.trials if t.ended == "stopped"} == {3}


def test_rank_checked_stops_only_after_measuring_enough_trials():
    scheduler = rank_checked(min_pairs=8)
    sim = run(scheduler, budget=400)
    assert scheduler.state(1) == PRUNING and scheduler.rho[1] == pytest.approx(1.0)
    first_stop = min(i for i, t in enumerate(sim.trials) if t.ended == "stopped")
    # the first 8 trials that reached epoch 3 were the evidence; none of them was stopped at 1
    assert first_stop >= 8


def test_rank_checked_measures_before_it_trusts_a_rung():
    scheduler = rank_checked(min_pairs=50)
    sim = run(scheduler, budget=60)
    # too few trials to believe any correlation: everything runs to the end
    assert all(scheduler.state(r) == MEASURING for r in scheduler.rungs)
    assert all(t.ended != "stopped" for t in sim.trials)


def test_make_scheduler_says_its_rule_and_what_it_measured():
    scheduler = make_scheduler(SearchSettings(max_epochs=MAX_T, grace_period=1, reduction_factor=3))
    assert scheduler.rungs == [1, 3]
    run(scheduler, oracle=crossing, budget=400)
    rule = scheduler.rule()
    assert "report 1 vs 3: rho=-1.00" in rule and "off" in rule
    assert "report 3 vs 9: rho=+1.00" in rule and "pruning" in rule


def test_benchmark_without_the_data_fails_in_one_line(tmp_path):
    from hpsearch.benchmarks.simulated_search import main

    # run_main turns a UsageError into its message on one line and exit status 2
    with pytest.raises(UsageError, match="no LCBench surrogate") as e:
        main(["--smoke", "--data-dir", str(tmp_path)])
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_benchmark_smoke_writes_a_table_and_the_rule(tmp_path):
    pytest.importorskip("yahpo_gym")
    pytest.importorskip("onnxruntime")
    data = REPO.parent / "shared/data/yahpo"
    if not (data / "lcbench/model.onnx").is_file():
        pytest.skip(f"no LCBench data at {data}")
    out = tmp_path / "smoke.md"
    command = [sys.executable, "benchmarks/simulated_search.py", "--smoke", "--tasks", "3945", "--seeds", "1"]
    command += ["--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    env = {**os.environ, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "- Command: `python benchmarks/simulated_search.py --smoke" in text
    rows = [line for line in text.splitlines() if line.startswith("| ours (TPE")]
    assert len(rows) == 3  # the regret, time-to-target and time-to-random's-end tables
    assert "rank-checked ASHA" in text and "- 3945: report 1 vs 3: rho=" in text
    assert not (tmp_path / ".config").exists()  # yahpo's settings went to the cache
    assert "## Time to random search's final regret" in text
    section = text.split("## Time to random search's final regret")[1].splitlines()
    random_row = next(line for line in section if line.startswith("| random, no stopping | "))
    assert 0 < float(random_row.split("|")[2]) <= 1  # random reaches its own end within the budget
    runs = pd.read_csv(tmp_path / "smoke_runs.csv.gz")
    assert len(runs) == 9 and set(runs["task"].astype(str)) == {"3945"}
    steps = json.loads(runs.loc[runs["method"] == "random, no stopping", "steps"].item())
    assert steps and [b for b, _ in steps] == sorted(b for b, _ in steps)  # budgets only grow
    assert [r for _, r in steps] == sorted((r for _, r in steps), reverse=True)  # regret only falls


def test_rank_checked_counts_a_trial_that_ends_before_the_next_checkpoint():
    # max_t 9: rungs 1 and 3. Each trial's budget cut its horizon to 5 reports (it ends itself,
    # `stopped`), so none reaches 9: its last value stands in for 9, and rung 3 gets its evidence.
    scheduler = rank_checked(min_pairs=8)
    scheduler.set_search_properties("val_acc", "max")
    for k in range(8):
        trial = SimpleNamespace(trial_id=f"t{k}")
        for t in range(1, 6):
            result = {"training_iteration": t, "val_acc": k * t, "stopped": "completed" if t == 5 else ""}
            scheduler.on_trial_result(None, trial, result)
        scheduler.on_trial_complete(None, trial, result)
    assert len(scheduler.pairs[3]) == 8 and scheduler.rho[3] == pytest.approx(1.0)
    assert scheduler.state(3) == PRUNING
    # A trial the scheduler stopped (no `stopped` of its own) stands in for nothing.
    pruned = SimpleNamespace(trial_id="p")
    for t in range(1, 5):
        scheduler.on_trial_result(None, pruned, {"training_iteration": t, "val_acc": 0.0, "stopped": ""})
    scheduler.on_trial_complete(None, pruned, {"training_iteration": 4, "val_acc": 0.0, "stopped": ""})
    assert len(scheduler.pairs[3]) == 8


def test_the_benchmarks_log_ndtr_is_optunas_function_vectorised(monkeypatch):
    pytest.importorskip("scipy")
    from optuna.samplers._tpe import _truncnorm

    from hpsearch.benchmarks.simulated_search import use_vectorised_log_ndtr

    own = _truncnorm._log_ndtr
    monkeypatch.setattr(_truncnorm, "_log_ndtr", own)  # put back after the test
    assert use_vectorised_log_ndtr()
    assert _truncnorm._log_ndtr is not own
    x = np.concatenate([np.linspace(-40, 40, 4001), [-1e3, 1e3]])  # both tails and the middle
    # Far in the right tail, log Phi is about -1e-13: there the two differ in absolute terms only
    np.testing.assert_allclose(_truncnorm._log_ndtr(x), own(x), rtol=1e-7, atol=1e-12)
