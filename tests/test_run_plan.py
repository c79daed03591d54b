"""The search's plan (reports per epoch, wall estimate), Ctrl-C, and --resume keeping its settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
import torch

import hpsearch.search.plan
import hpsearch.search.run
from hpsearch.search.plan import (
    MAX_REPORT_SHARE,
    EpochTime,
    Plan,
    measure_epoch,
    measure_epoch_where_trials_run,
    plan_reports,
    wall_estimate_s,
)
from hpsearch.search.settings import SearchSettings
from hpsearch.search.space import load_space
from tests.fake_datasets import write_mnist
from tests.search_helpers import tiny_data, write_tiny_space

REPO = Path(__file__).resolve().parents[1]


def test_short_epochs_report_once_an_epoch():
    settings = SearchSettings(trial_budget_s=600)
    assert plan_reports(EpochTime(train_s=30, val_s=3), settings) == 1


def test_long_epochs_report_at_fractions_that_fit_the_budget():
    settings = SearchSettings(trial_budget_s=150)
    k = plan_reports(EpochTime(train_s=60, val_s=2), settings)
    assert k == 4  # 60/2 + 2 = 32 s is over 150/8; 60/4 + 2 = 17 s is under
    assert EpochTime(60, 2).report_s(k) <= MAX_REPORT_SHARE * 150 < EpochTime(60, 2).report_s(k // 2)


def test_no_finer_reports_than_keep_validation_under_a_third_of_each():
    # Each report validates the whole split: past this point finer reports mostly add validation.
    settings = SearchSettings(trial_budget_s=100)
    assert plan_reports(EpochTime(train_s=40, val_s=20), settings) == 1  # halves: 20 s of 40 validating
    # MNIST on one core: 8 reports an epoch (16.5 s, a quarter validating), not 16 (39% validating).
    assert plan_reports(EpochTime(train_s=100, val_s=4), SearchSettings(trial_budget_s=120)) == 8
    # Cheap validation: as fine as the budget asks, up to the finest choice.
    assert plan_reports(EpochTime(train_s=1000, val_s=0.1), SearchSettings(trial_budget_s=100)) == 16


def test_wall_estimate_counts_rounds_of_trials_and_caps_at_the_time_budget():
    settings = SearchSettings(trials=12, max_epochs=3, trial_budget_s=150)
    plan = Plan(EpochTime(train_s=30, val_s=5), reports_per_epoch=1, why="")
    assert plan.trial_s(settings) == 105  # 3 reports of 35 s, inside the 150 s budget
    assert wall_estimate_s(plan, settings, slots=2) == 6 * 105
    capped = SearchSettings(trials=12, max_epochs=3, trial_budget_s=150, time_budget_s=200)
    assert wall_estimate_s(plan, capped, slots=2) == 200
    # What the search's start already took (data, the plan, Ray) comes on top.
    assert wall_estimate_s(plan, settings, slots=2, spent_s=40) == 40 + 6 * 105


@pytest.mark.parametrize(("train_s", "warned"), [(30, False), (60, True)])
def test_quick_search_warns_before_it_starts_when_it_will_outrun_its_promise(
    tmp_path, capsys, monkeypatch, train_s, warned
):
    space = load_space(str(write_tiny_space(tmp_path)))
    monkeypatch.setattr(hpsearch.search.run, "concurrent_slots", lambda settings: 2)  # as on 2 cores
    settings = SearchSettings(trials=12, max_epochs=3, trial_budget_s=200)
    # 6 rounds of 3 reports: 30 s epochs -> 6 * 105 = 630 s (+40 s start); 60 s -> 6 * 195 = 1170 s.
    plan = Plan(EpochTime(train_s=train_s, val_s=5), reports_per_epoch=1, why="measured")
    data = tiny_data()
    hpsearch.search.run.print_plan(space, settings, data, tmp_path, plan, quick=True, spent_s=40)
    err = capsys.readouterr().err
    assert ("warning: --quick promises about 15 min" in err) == warned, err
    # A search that is not --quick promised nothing.
    hpsearch.search.run.print_plan(space, settings, data, tmp_path, plan, quick=False, spent_s=40)
    assert "warning" not in capsys.readouterr().err


def test_measure_epoch_scales_a_few_batches_to_the_whole_split(tmp_path, monkeypatch):
    # A clock that the stand-in training and validation advance by a known cost per image.
    clock = [0.0]
    monkeypatch.setattr(hpsearch.search.plan.time, "perf_counter", lambda: clock[0])

    def fake_train(task, config, data, **kwargs):
        clock[0] += 0.5 + 0.01 * len(data.train) + 0.002 * len(data.val)  # set-up, training, validation
        return SimpleNamespace(model=None)

    def fake_evaluate(model, split, task):
        clock[0] += 0.002 * len(split)

    monkeypatch.setattr(hpsearch.search.plan, "train", fake_train)
    monkeypatch.setattr(hpsearch.search.plan, "evaluate", fake_evaluate)
    space = load_space(write_tiny_space(tmp_path))  # baseline batch 32: a probe of 6 batches
    data = tiny_data()  # 1,000 train, 200 val
    epoch = measure_epoch(space, data, SearchSettings(), torch.device("cpu"))
    probe = 6 * 32
    assert epoch.val_s == pytest.approx(0.002 * 200)
    # The probe's span less its validation, scaled from 192 images to 1,000 (set-up included).
    assert epoch.train_s == pytest.approx((0.5 + 0.01 * probe) * 1000 / probe)


def test_the_plan_is_timed_in_a_ray_task_holding_one_trials_resources(ray_session, tmp_path):
    space_path = str(write_tiny_space(tmp_path))
    space, data = load_space(space_path), tiny_data()
    settings = SearchSettings(cpus_per_trial=1, gpus_per_trial=1)
    epoch, device = measure_epoch_where_trials_run(space, data, settings)
    assert epoch.train_s > 0 and epoch.val_s > 0
    if torch.cuda.is_available():
        assert not device.startswith("cpu")  # the GPU's name
    else:  # ray_session's GPUs are logical: the task held one, and torch found no CUDA with it
        assert device.startswith("cpu (Ray gave it GPU ") and device.endswith("torch sees none)")
    _, device = measure_epoch_where_trials_run(space, data, SearchSettings(cpus_per_trial=1))
    assert device == "cpu"  # a CPU trial's task holds no GPU
    # The search's plan says where it measured.
    args = hpsearch.search.run.parse_args(["--space", space_path, "--gpus", "0", "--trial-budget", "60"])
    plan = hpsearch.search.run.plan_search(args, space, SearchSettings(trial_budget_s=60), data)
    assert plan.epoch is not None and "on a trial's cpu," in plan.why


def test_a_plan_that_no_node_has_room_to_time_goes_unmeasured(ray_session, tmp_path):
    space = load_space(write_tiny_space(tmp_path))
    started = time.monotonic()
    # ray_session has 2 CPUs: a task asking for a trial's 3 waits, and is given up after 1 s.
    timed = measure_epoch_where_trials_run(space, tiny_data(), SearchSettings(cpus_per_trial=3), timeout_s=1)
    assert timed is None and time.monotonic() - started < 10


def run_cli(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "search" / "run.py"),
        "--space",
        str(write_tiny_space(tmp_path)),
        "--gpus",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
        "--results-dir",
        str(tmp_path / "results"),
        "--offline",
        "--name",
        "stop",
        *extra,
    ]


@pytest.mark.slow
def test_ctrl_c_exits_130_and_the_printed_command_resumes_it(tmp_path):
    write_mnist(tmp_path / "data", n_train=5600, n_test=100)  # 5,000 of it held out for val
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    argv = run_cli(tmp_path, "--trials", "6", "--max-epochs", "3", "--reports-per-epoch", "1")
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    trial_dirs = lambda: list((tmp_path / "results" / "stop").glob("*/result.json"))  # noqa: E731
    while (
        time.monotonic() < deadline
        and proc.poll() is None
        and not any(p.stat().st_size for p in trial_dirs())
    ):
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr[-2000:]
    (line,) = [line for line in stderr.splitlines() if "continue with:" in line]
    command = line.split("continue with: ", 1)[1]
    assert command.startswith("python search/run.py ")  # as a user runs it from the repo
    # Here: the same command from the test's folder (its ./mlflow.db), with this interpreter.
    command = command.replace("python search/run.py", f"{sys.executable} {REPO / 'search' / 'run.py'}", 1)
    assert "--resume" in command and "--name stop" in command
    # Run as printed: it takes the search's own settings (6 trials, its data) from the record.
    again = subprocess.run(
        command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-2000:]
    trials = (tmp_path / "results" / "stop" / "trials.csv").read_text().splitlines()
    assert len(trials) == 1 + 6


@pytest.mark.slow
def test_ctrl_c_before_any_trial_reports_exits_130_with_nothing_left_running(tmp_path):
    write_mnist(tmp_path / "data", n_train=5600, n_test=100)
    argv = run_cli(tmp_path, "--trials", "4", "--max-epochs", "3", "--reports-per-epoch", "1")
    proc = subprocess.Popen(argv, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    # The first trial's folder exists, and nothing in it yet: no trial has reported.
    while time.monotonic() < deadline and proc.poll() is None:
        if list((tmp_path / "results" / "stop").glob("*/result.json")):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    runs = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs(["1"])
    assert runs and not [r.info.run_name for r in runs if r.info.status == "RUNNING"]


def test_resume_refuses_an_option_that_differs_from_the_search(tmp_path):
    from hpsearch.plumbing.errors import UsageError
    from hpsearch.search.run import RECORD, main, parse_args, settings_from, write_record

    args = parse_args(run_cli(tmp_path, "--trials", "6", "--quick")[2:])
    folder = tmp_path / "results" / "stop"
    write_record(folder, args, settings_from(args, load_space(args.space)))
    (folder / "tuner.pkl").write_bytes(b"")  # a search was started here
    assert (folder / RECORD).is_file()
    with pytest.raises(UsageError, match="ran with --trials 6; --resume keeps it"):
        main(run_cli(tmp_path, "--resume", "--trials", "20")[2:])
    with pytest.raises(UsageError, match="ran with --data-dir .*data; --resume keeps it"):
        main(run_cli(tmp_path, "--resume", "--data-dir", str(tmp_path / "elsewhere"))[2:])
