"""The search: Ray Tune + Optuna TPE + ASHA, on tiny tasks, with one shared Ray (ray_session)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from search_helpers import (
    failing_trial,
    placement_trial,
    slow_trial,
    steady_trial,
    tiny_data,
    write_tiny_space,
)

from hpsearch.plumbing.cli import run_main
from hpsearch.search.export import parse_args as export_args
from hpsearch.search.run import main, parse_args, settings_from
from hpsearch.search.searcher import STUDY_FILE
from hpsearch.search.space import load_space
from hpsearch.search.summary import top_finished, trials_frame
from hpsearch.search.tuner import SearchSettings, build_tuner, restore_tuner
from hpsearch.trainables.fates import FINISHED_FATES
from tests.fake_datasets import write_mnist

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def load_study(experiment_dir: Path) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(experiment_dir / STUDY_FILE)))
    return optuna.load_study(study_name=experiment_dir.name, storage=storage)


@pytest.mark.slow
def test_search_runs_baseline_first_and_records_pruned_trials(ray_session, tmp_path):
    space = load_space(write_tiny_space(tmp_path))
    # Trials whose first report ranks them exactly as their last (val_acc = lr x epoch): once 8
    # trials have shown that, the rung stops the poor ones (search/stopping.py).
    settings = SearchSettings(trials=16, max_epochs=3, trial_budget_s=60, cpus_per_trial=1, seed=0)
    experiment_dir = tmp_path / "results" / "smoke"
    tuner = build_tuner(space, settings, tiny_data(), experiment_dir, trial_fn=steady_trial)
    results = tuner.fit()
    frame = trials_frame(results, space, settings)
    assert "report 1 vs 3: rho=+1.00" in tuner.scheduler.rule() and tuner.scheduler.state(1) == "pruning"

    study = load_study(experiment_dir)
    first = min(study.trials, key=lambda t: t.number)
    assert first.params == {"lr": 1e-3, "batch_size": 32}  # the seed's baseline is trial 0
    assert frame["baseline"].sum() == 1
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "ASHA stopped no trial early"
    # Optuna and the trial table agree on which trials were pruned, and those ran fewer epochs.
    assert len(pruned) == (frame["fate"] == "pruned").sum()
    assert (frame.loc[frame["fate"] == "pruned", "epochs_run"] < settings.max_epochs).all()
    # steady_trial reports val_acc = lr x epoch: the best finished trial is the one with the
    # largest lr, its value that lr over the whole horizon, and the best Optuna was told of.
    finished = frame[frame["fate"].isin(FINISHED_FATES)]
    best = top_finished(frame).iloc[0]
    assert best["config/lr"] == finished["config/lr"].max()
    assert best["val_acc"] == pytest.approx(best["config/lr"] * settings.max_epochs)
    completed = [t.value for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(completed) == len(finished) and best["val_acc"] == pytest.approx(max(completed))


def test_run_cli_writes_best_config_and_trial_table(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # MLflow's default store is ./mlflow.db: not the repo's
    write_mnist(tmp_path / "data", n_train=5200, n_test=100)
    space_path = write_tiny_space(tmp_path)
    argv = [
        "--space",
        str(space_path),
        "--gpus",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--results-dir",
        str(tmp_path / "results"),
        "--name",
        "cli",
        "--trials",
        "3",
        "--max-epochs",
        "1",
        "--keep-models",
        "1",
        "--offline",
    ]
    assert main(argv) == 0
    best = json.loads((tmp_path / "results" / "cli" / "best.json").read_text())
    assert best["task"] == "mnist" and best["trials"] == 3 and "lr" in best["best_config"]
    assert (tmp_path / "results" / "cli" / "trials.csv").is_file()
    # The commands it ends with name the search as every command does now: --name, not --search.
    said = "take the best away: "
    (hint,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith(said)]
    words = shlex.split(hint.removeprefix(said))
    assert words[:2] == ["python", "search/export.py"] and "--search" not in words
    assert export_args(words[2:]).search == "cli"
    # The leaderboard's first line is the command that made it, which the search also prints.
    made_by = (tmp_path / "results" / "cli" / "report" / "leaderboard.md").read_text().splitlines()[0]
    assert "reports/leaderboard.py" in made_by and "--name cli " in made_by and "--search" not in made_by
    # A second search under the same name is refused rather than mixed into the first.
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: main(argv))
    assert stop.value.code == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--trial-budget", "-5"], "--trial-budget must be positive"),
        (["--gpus", "-1"], "--gpus must not be negative"),
        (["--gpus", "1", "--gpus-per-trial", "2"], "--gpus-per-trial is more than --gpus"),
        (["--trials", "0"], "--trials must be at least 1"),
    ],
)
@pytest.mark.slow
def test_run_cli_rejects_bad_input_in_one_line(tmp_path, extra, message):
    space_path = write_tiny_space(tmp_path)
    proc = subprocess.run(
        [sys.executable, "search/run.py", "--space", str(space_path), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {message}"]


def test_run_cli_rejects_a_missing_space_file(tmp_path):
    proc = subprocess.run(
        [sys.executable, "search/run.py", "--space", str(tmp_path / "nope.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: space file") and len(proc.stderr.strip().splitlines()) == 1


def test_run_cli_rejects_more_gpus_than_the_cluster_has(ray_session, tmp_path):
    write_mnist(tmp_path / "data", n_train=5200, n_test=100)
    argv = [
        "--space",
        str(write_tiny_space(tmp_path)),
        "--gpus",
        "8",
        "--data-dir",
        str(tmp_path / "data"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--results-dir",
        str(tmp_path / "results"),
        "--offline",
    ]
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: main(argv))
    assert stop.value.code == 2  # ray_session has 4 (logical) GPUs


@pytest.mark.slow
def test_half_gpu_trials_pack_eight_at_once_on_four_gpus(ray_session, tmp_path):
    space_path = write_tiny_space(tmp_path)
    args = parse_args(
        [
            "--space",
            str(space_path),
            "--gpus",
            "4",
            "--gpus-per-trial",
            "0.5",
            "--cpus-per-trial",
            "0.25",
            "--trials",
            "8",
            "--max-epochs",
            "1",
        ]
    )
    space = load_space(space_path)
    settings = settings_from(args, space)
    results = build_tuner(
        space, settings, tiny_data(), tmp_path / "res" / "gpus", trial_fn=placement_trial
    ).fit()
    # Every trial got one GPU id, and all eight were running at once (each waited for the rest).
    assert len(results) == 8
    assert all(len(eval(r.metrics["gpu_ids"])) == 1 for r in results)
    assert all(r.metrics["running_at_once"] == 8 for r in results)


def test_budget_stopper_ends_an_over_long_trial(ray_session, tmp_path):
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(trials=1, max_epochs=90, trial_budget_s=2.0, cpus_per_trial=1)
    results = build_tuner(
        space, settings, tiny_data(), tmp_path / "res" / "budget", trial_fn=slow_trial
    ).fit()
    frame = trials_frame(results, space, settings)
    # The trial never stops itself (99 epochs of 0.4 s); Tune's stopper ends it near 2.2 s.
    assert frame["fate"].tolist() == ["budget"]
    assert frame["epochs_run"].iloc[0] < 15


def test_a_failing_trial_does_not_end_the_search(ray_session, tmp_path):
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(trials=6, max_epochs=1, cpus_per_trial=1)
    experiment_dir = tmp_path / "res" / "failing"
    results = build_tuner(space, settings, tiny_data(), experiment_dir, trial_fn=failing_trial).fit()
    frame = trials_frame(results, space, settings)
    assert len(frame) == 6
    failed = frame[frame["fate"] == "failed"]
    assert len(failed) == (frame["config/batch_size"] == 64).sum()
    assert failed["error"].str.contains("boom").all()
    assert (frame["fate"] != "failed").any()
    states = {t.state for t in load_study(experiment_dir).trials}
    assert TrialState.RUNNING not in states  # every trial was told its end, failures included


@pytest.mark.slow
def test_trials_land_on_both_nodes_of_a_two_node_cluster(tmp_path):
    proc = subprocess.run(
        [sys.executable, "tests/search_driver.py", "cluster", str(write_tiny_space(tmp_path)), str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(json.loads(proc.stdout.strip().splitlines()[-1])) == 2


@pytest.mark.slow
def test_a_killed_search_resumes_and_runs_each_trial_once(ray_session, tmp_path):
    space_path = write_tiny_space(tmp_path)
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0", "STEADY_EPOCH_S": "1.0"}
    driver = subprocess.Popen(
        [sys.executable, "tests/search_driver.py", "steady", str(space_path), str(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    experiment_dir = tmp_path / "steady"
    deadline = time.monotonic() + 240
    # Kill the driver outright once two trials have finished and others are under way.
    while time.monotonic() < deadline:
        journal = experiment_dir / STUDY_FILE
        if (
            journal.exists()
            and sum(t.state == TrialState.COMPLETE for t in load_study(experiment_dir).trials) >= 2
        ):
            break
        time.sleep(0.5)
    else:
        driver.kill()
        pytest.fail("the first search never finished two trials")
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=60)
    before = {t.number for t in load_study(experiment_dir).trials if t.state == TrialState.COMPLETE}

    space = load_space(space_path)
    settings = SearchSettings(trials=6, max_epochs=3, cpus_per_trial=1)
    results = restore_tuner(space, settings, tiny_data(), experiment_dir, trial_fn=steady_trial).fit()
    ids = [r.metrics["trial_id"] for r in results]
    assert len(ids) == 6 and len(set(ids)) == 6  # every trial exactly once
    assert all(r.error is None for r in results)
    # Trials finished before the kill keep their result; the rest ran again (or were pruned).
    ended = [
        t for t in load_study(experiment_dir).trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ]
    assert before <= {t.number for t in ended} and len(ended) >= 6
