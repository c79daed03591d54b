"""Faults a long search meets: a trial's worker killed outright, its driver killed and resumed.

Nothing may be left RUNNING where a user looks afterwards (MLflow, the Optuna journal), and no
trial may be counted twice.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import mlflow
import optuna
import pandas as pd
import pytest
import ray.cloudpickle
from optuna.trial import TrialState

import hpsearch.search.run
from hpsearch.search.searcher import STUDY_FILE
from hpsearch.search.space import load_space
from hpsearch.search.summary import trials_frame
from hpsearch.search.tracking import MlflowTracker
from hpsearch.search.tuner import SearchSettings, build_tuner
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


def crashing_trial(params, *, data, task_name, baseline, settings):
    """Every trial fails before its first report (a bug in a user's model family, say)."""
    raise RuntimeError("boom: every trial crashes")


def test_a_search_where_no_trial_finished_exits_1_in_one_line(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # MLflow's default store is ./mlflow.db: not the repo's
    write_mnist(tmp_path / "data", n_train=5200, n_test=100)
    crashing = functools.partial(build_tuner, trial_fn=crashing_trial)
    monkeypatch.setattr(hpsearch.search.run, "build_tuner", crashing)
    argv = run_cli(tmp_path, "--trials", "2", "--max-epochs", "1", "--reports-per-epoch", "1")[2:]
    assert hpsearch.search.run.main(argv) == 1  # not 0 (nothing found), not 2 (no user mistake)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    trials_csv = tmp_path / "results" / "stop" / "trials.csv"
    assert last == (
        "search failed: no trial finished (2 failed); one trial's error: RuntimeError: boom: every "
        f"trial crashes; every trial is in {trials_csv}"
    )
    assert len(pd.read_csv(trials_csv)) == 2  # the trial table is written all the same
    # Its MLflow run says so too: FAILED, with the same reason, not FINISHED as if it had found something.
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist").experiment_id
    (search,) = client.search_runs([experiment], "tags.`hpsearch.role` = 'search'")
    assert search.info.status == "FAILED"
    assert search.data.tags["hpsearch.error"] == (
        "no trial finished (2 failed); one trial's error: RuntimeError: boom: every trial crashes"
    )


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

    # The Optuna journal: every trial ended, the one asked for just before the kill included,
    # and each trial Tune ran is in it once, in the state its fate maps to.
    trials = study_trials(journal)
    states = [(t.number, t.state.name, t.params) for t in trials]
    output = again.stdout[-3000:]
    assert not [t.number for t in trials if t.state == TrialState.RUNNING], states
    fates = pd.read_csv(tmp_path / "results" / "stop" / "trials.csv").set_index("trial_id")["fate"]
    # All ran to an end of their own or the scheduler's: none failed, none left unrun.
    ran = {"completed", "budget", "pruned", "diverged"}
    assert len(fates) == TRIALS and set(fates) <= ran, (fates.to_dict(), output)
    judged = Counter(t.state.name for t in trials if t.state != TrialState.FAIL)
    finished = fates.isin(["completed", "budget"]).sum()
    assert judged == Counter(COMPLETE=finished, PRUNED=(fates == "pruned").sum()), (states, output)
    # MLflow: one run per trial Tune ran, none RUNNING, the search's own run ended too.
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    tune_trials = set(fates.index)
    trial_runs = [r for r in runs if r.data.tags.get("hpsearch.role") == "trial"]
    per_trial = Counter(r.data.tags["hpsearch.trial_id"] for r in trial_runs)
    assert {t: per_trial[t] for t in tune_trials} == dict.fromkeys(tune_trials, 1), per_trial
    # A trial killed with the driver before Tune's checkpoint saw it is not run again: its run
    # says so, and its Optuna trial failed (TPE's seeded start may propose its point again).
    lost = [r for r in trial_runs if r.data.tags["hpsearch.trial_id"] not in tune_trials]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(lost) <= len(failed)
    for run in lost:
        assert run.info.status == "KILLED" and run.data.tags["hpsearch.fate"] == "stopped"
        assert "driver died" in run.data.tags["hpsearch.error"]
    searches = [r for r in runs if r.data.tags.get("hpsearch.role") == "search"]
    assert len(searches) == 1 and searches[0].info.status == "FINISHED", output


def test_closing_a_study_fails_the_trials_it_left_running_and_keeps_the_rest(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from hpsearch.search.searcher import close_study, fail_running

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


def started_searcher(tmp_path):
    """A search's searcher, as set up at its start, and its pickle as Tune keeps it in tuner.pkl
    for --resume (a restored searcher is that pickle, then its last checkpoint)."""
    from hpsearch.search.searcher import make_searcher

    space = load_space(write_tiny_space(tmp_path))
    results_dir = tmp_path / "search"
    results_dir.mkdir()
    searcher = make_searcher(space, seed=0, results_dir=results_dir, n_startup_trials=2)
    searcher.set_search_properties(space.metric, space.mode, {})
    return searcher, ray.cloudpickle.dumps(searcher), results_dir


def test_a_trial_told_after_the_last_checkpoint_runs_again_without_a_second_tell(tmp_path):
    searcher, pickled, results_dir = started_searcher(tmp_path)
    searcher.suggest("a")
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's last checkpoint: "a" is running
    last = {"val_acc": 0.5, "training_iteration": 1, "stopped": "completed"}
    searcher.on_trial_result("a", last)
    searcher.on_trial_complete("a", last)  # told; then the driver is killed

    again = ray.cloudpickle.loads(pickled)
    again.restore(str(tmp_path / "searcher.pkl"))
    rerun = {**last, "val_acc": 0.6}  # Tune runs "a" again (a GPU is not bit-exact)
    again.on_trial_result("a", rerun)
    again.on_trial_complete("a", rerun)  # no "Cannot tell a COMPLETE trial", which fails the rerun
    (trial,) = study_trials(results_dir / STUDY_FILE)
    assert trial.state == TrialState.COMPLETE and trial.value == 0.5  # the first end stands


def test_a_trial_the_searchers_checkpoint_missed_runs_without_optuna(tmp_path):
    searcher, pickled, results_dir = started_searcher(tmp_path)
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.suggest("a")  # in Tune's checkpoint; the driver died before the searcher's was written

    again = ray.cloudpickle.loads(pickled)
    again.restore(str(tmp_path / "searcher.pkl"))
    last = {"val_acc": 0.5, "training_iteration": 1, "stopped": "completed"}
    again.on_trial_result("a", last)  # Tune runs "a": no KeyError from the searcher
    again.on_trial_complete("a", last)
    (trial,) = study_trials(results_dir / STUDY_FILE)
    assert trial.state == TrialState.FAIL  # failed on restore: no Tune trial of the searcher's


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
