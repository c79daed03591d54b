"""Faults a long search meets: a trial's worker killed outright, its driver killed and resumed.

Nothing may be left RUNNING where a user looks afterwards (MLflow, the Optuna journal), and no
trial may be counted twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import mlflow
import optuna
import pytest
import ray.cloudpickle
from optuna.trial import TrialState

from search.searcher import STUDY_FILE
from search.space import load_space
from search.summary import trials_frame
from search.tracking import MlflowTracker
from search.tuner import SearchSettings, build_tuner
from tests.fake_datasets import write_mnist
from tests.search_helpers import tiny_data, write_tiny_space
from tests.test_run_plan import run_cli

TRIALS = 6

# Ray workers cannot import this test module: send its trial functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def killed_trial(params, *, data, task_name, baseline, settings):
    """Reports as a trial does; the baseline's worker is SIGKILLed after its first report (the
    kernel's OOM killer, a segfault in a native library)."""
    from ray import tune

    for epoch in range(1, settings.max_epochs + 1):
        time.sleep(0.3)
        last = epoch == settings.max_epochs
        tune.report({"epoch": epoch, "val_acc": params["lr"] * epoch, "stopped": "completed" if last else ""})
        if params == {k: baseline[k] for k in params}:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
def test_a_trial_whose_worker_is_killed_fails_alone_and_leaves_nothing_running(ray_session, tmp_path):
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(trials=4, max_epochs=3, cpus_per_trial=1, grace_period=3)
    experiment_dir = tmp_path / "results" / "killed"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(
        space, settings, experiment_dir, tracking_uri=uri, experiment=None, command="pytest", quick=True
    )
    results = build_tuner(space, settings, tiny_data(), experiment_dir, [tracker], killed_trial).fit()
    tracker.finish({}, [], interrupted=False, models=[])

    frame = trials_frame(results, space, settings)
    assert len(frame) == 4 and results.num_errors == 1  # the search went on past the dead worker
    assert frame.loc[frame["baseline"], "fate"].tolist() == ["failed"]
    assert (frame.loc[~frame["baseline"], "fate"] == "completed").all()
    runs = mlflow.MlflowClient(tracking_uri=uri).search_runs(
        [mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name("mnist").experiment_id]
    )
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    trial_runs = {
        r.data.tags.get("hpsearch.baseline"): r for r in runs if r.data.tags.get("hpsearch.role") == "trial"
    }
    dead = trial_runs["true"]
    assert dead.info.status == "FAILED" and dead.data.tags["hpsearch.fate"] == "failed"
    assert "hpsearch.error" in dead.data.tags  # what Ray said of the worker, for the user to see


def study_trials(journal) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).trials


@pytest.mark.slow
def test_a_driver_killed_outright_resumes_with_nothing_left_running_or_counted_twice(tmp_path):
    write_mnist(tmp_path / "data", n_train=5600, n_test=100)
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    argv = run_cli(tmp_path, "--trials", str(TRIALS), "--max-epochs", "3", "--reports-per-epoch", "1")
    # Its own session: the kill takes the driver and the Ray processes it started, as an OOM
    # killer or a lost node would.
    driver = subprocess.Popen(
        argv,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    journal = tmp_path / "results" / "stop" / STUDY_FILE
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        if journal.exists():
            states = Counter(t.state for t in study_trials(journal))
            if states[TrialState.COMPLETE] >= 1 and states[TrialState.RUNNING] >= 1:
                break
        time.sleep(0.5)
    else:
        os.killpg(driver.pid, signal.SIGKILL)
        pytest.fail("the search never had a finished trial and a running one at once")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)

    again = subprocess.run(
        run_cli(tmp_path, "--resume"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]

    # The Optuna journal: every trial ended, the one asked for just before the kill included.
    trials = study_trials(journal)
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    ended = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(ended) == TRIALS
    # MLflow: one run per trial, none RUNNING, the search's own run ended too.
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    per_trial = Counter(
        r.data.tags.get("hpsearch.trial_id") for r in runs if r.data.tags.get("hpsearch.role") == "trial"
    )
    assert len(per_trial) == TRIALS and set(per_trial.values()) == {1}, per_trial
    searches = [r for r in runs if r.data.tags.get("hpsearch.role") == "search"]
    assert len(searches) == 1 and searches[0].info.status == "FINISHED"


def test_closing_a_study_fails_the_trials_it_left_running_and_keeps_the_rest(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from search.searcher import close_study, fail_running

    results_dir = tmp_path / "search"
    results_dir.mkdir()
    storage = JournalStorage(JournalFileBackend(str(results_dir / STUDY_FILE)))
    study = optuna.create_study(study_name=results_dir.name, storage=storage)
    done, handed_out, orphan = study.ask(), study.ask(), study.ask()
    study.tell(done, 0.5)
    # On restore, the searcher keeps the trials it handed to Tune: those run again.
    assert fail_running(study, keep={handed_out.number}) == [orphan.number]
    assert close_study(results_dir) == [handed_out.number]  # at the end nothing runs any more
    states = [t.state for t in optuna.load_study(study_name=results_dir.name, storage=storage).trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]


def test_a_trial_that_never_started_is_not_listed_as_the_baseline(tmp_path):
    from types import SimpleNamespace

    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(trials=2, max_epochs=3)

    def result(config: dict, trial_id: str) -> SimpleNamespace:
        path = f"/results/stop/run_trial_{trial_id}_1_x=1_2026-12-02_03-00-00"
        return SimpleNamespace(metrics={}, metrics_dataframe=None, config=config, error=None, path=path)

    baseline = {k: space.baseline[k] for k in ("lr", "batch_size")}
    frame = trials_frame([result(baseline, "aaaa0000"), result({}, "bbbb0001")], space, settings)
    assert frame.set_index("trial_id")["baseline"].to_dict() == {"aaaa0000": True, "bbbb0001": False}
