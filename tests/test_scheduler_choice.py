"""--scheduler: which rule stops trials early, kept by --resume and known to a resumed search."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import ray.cloudpickle
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler

from hpsearch.plumbing.errors import UsageError
from hpsearch.search.run import RECORD, main, parse_args, settings_from, write_record
from hpsearch.search.space import load_space
from hpsearch.search.stopping import SCHEDULERS, RankCheckedASHA, make_scheduler, stopping_rule
from hpsearch.search.summary import trials_frame
from hpsearch.search.tuner import SearchSettings, build_tuner, restore_tuner
from tests.search_helpers import steady_trial, tiny_data, write_tiny_space
from tests.test_run_plan import run_cli

# Ray workers cannot import this test module: send its trial function by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

KINDS = {"rank-asha": RankCheckedASHA, "asha": ASHAScheduler, "hyperband": HyperBandScheduler}


@pytest.mark.parametrize("name", SCHEDULERS)
def test_make_scheduler_builds_the_chosen_rule_and_says_it_on_one_line(name):
    settings = SearchSettings(max_epochs=9, grace_period=1, reduction_factor=3, scheduler=name)
    scheduler = make_scheduler(settings)
    # FIFO's subclasses (rank-asha, hyperband) are not "no stopping": the exact class matters.
    assert type(scheduler) is KINDS.get(name, FIFOScheduler)
    rule = stopping_rule(scheduler)
    assert rule and "\n" not in rule
    if name == "asha":  # Ray's ASHA on the search's rungs: 1 and 3 reports below a horizon of 9
        assert "Iter 1.000" in rule and "Iter 3.000" in rule and "Iter 9.000" in rule
    if name == "fifo":
        assert rule.startswith("none")


def test_make_scheduler_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="unknown scheduler 'bohb'; known: rank-asha, asha"):
        make_scheduler(SearchSettings(scheduler="bohb"))


def test_scheduler_flag_goes_into_the_settings_default_rank_asha(tmp_path):
    space_path = str(write_tiny_space(tmp_path))
    space = load_space(space_path)
    assert settings_from(parse_args(["--space", space_path]), space).scheduler == "rank-asha"
    assert (
        settings_from(parse_args(["--space", space_path, "--scheduler", "fifo"]), space).scheduler == "fifo"
    )


def run_search(tmp_path: Path, name: str, cpus_per_trial: float = 1) -> tuple[tune.Tuner, object]:
    """A search of 6 steady trials, 2 at a time on ray_session's 2 CPUs (8 with a quarter each)."""
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(
        trials=6, max_epochs=3, trial_budget_s=60, cpus_per_trial=cpus_per_trial, scheduler=name
    )
    experiment_dir = tmp_path / "results" / f"{name}-{cpus_per_trial:g}"
    tuner = build_tuner(space, settings, tiny_data(), experiment_dir, trial_fn=steady_trial)
    return tuner, trials_frame(tuner.fit(), space, settings)


@pytest.mark.slow
def test_stock_asha_stops_trials_where_rank_asha_still_measures(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv("STEADY_EPOCH_S", "0.2")
    tuner, frame = run_search(tmp_path, "asha")
    # steady_trial ranks trials at epoch 1 exactly as at its end; Ray's ASHA cuts from the start.
    assert isinstance(tuner.scheduler, ASHAScheduler)
    assert len(frame) == 6 and (frame["fate"] == "pruned").any(), frame[["fate", "epochs_run"]]
    assert (frame.loc[frame["fate"] == "pruned", "epochs_run"] < 3).all()


@pytest.mark.slow
def test_hyperband_halves_only_with_more_trials_at_once_than_its_first_bracket(
    ray_session, tmp_path, monkeypatch
):
    monkeypatch.setenv("STEADY_EPOCH_S", "0.2")
    # Ray's HyperBand fills its brackets with the trials running at once, the first one (a horizon
    # of 3 at eta 3: 2 trials, no rung) before any other: 2 at a time never leave it.
    tuner, frame = run_search(tmp_path, "hyperband")
    assert isinstance(tuner.scheduler, HyperBandScheduler)
    assert (frame["fate"] == "completed").all(), frame["fate"].tolist()
    # 8 at a time fill it, and the next bracket halves its trials at the first report.
    tuner, frame = run_search(tmp_path, "hyperband", cpus_per_trial=0.25)
    assert (frame["fate"] == "pruned").any(), frame[["fate", "epochs_run"]]
    assert "num_stopped=0" not in stopping_rule(tuner.scheduler)


@pytest.mark.slow
def test_rank_asha_and_fifo_let_six_trials_run_their_whole_horizon(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv("STEADY_EPOCH_S", "0.2")
    for name in ("rank-asha", "fifo"):
        tuner, frame = run_search(tmp_path, name)
        # rank-asha believes a rung only after 8 trials have shown it ranks well: with 6, none stops.
        assert (frame["fate"] == "completed").all(), (name, frame["fate"].tolist())
        if name == "rank-asha":
            assert tuner.scheduler.state(1) == "measuring"


def test_resume_refuses_another_scheduler_and_reads_an_old_record_as_rank_asha(tmp_path):
    args = parse_args(run_cli(tmp_path, "--scheduler", "asha")[2:])
    folder = tmp_path / "results" / "stop"
    write_record(folder, args, settings_from(args, load_space(args.space)))
    (folder / "tuner.pkl").write_bytes(b"")  # a search was started here
    with pytest.raises(UsageError, match="ran with --scheduler asha; --resume keeps it .you gave fifo"):
        main(run_cli(tmp_path, "--resume", "--scheduler", "fifo")[2:])

    # A search recorded before --scheduler existed ran rank-asha, and resumes with it.
    from hpsearch.search.run import resumed_settings

    record = json.loads((folder / RECORD).read_text())
    del record["settings"]["scheduler"]
    (folder / RECORD).write_text(json.dumps(record))
    again = parse_args(run_cli(tmp_path, "--resume")[2:])
    assert resumed_settings(
        again, load_space(again.space), folder, run_cli(tmp_path, "--resume")[2:]
    ).scheduler == ("rank-asha")


# Where the driver leaves its pid for interrupting_trial: set before the trial function is
# pickled (by value, with the globals it reads) as the tuner is built.
SIGNAL_DIR = ""


def interrupting_trial(params, *, data, task_name, baseline, settings):
    """steady_trial; the first trial to report asks the driver to stop as Ctrl-C does (SIGUSR1,
    which Tune takes the same way), once: the search ends with trials left to resume."""
    from ray import tune

    here = Path(SIGNAL_DIR)
    for epoch in range(1, settings.max_epochs + 1):
        time.sleep(0.3)
        last = epoch == settings.max_epochs
        tune.report({"epoch": epoch, "val_acc": params["lr"] * epoch, "stopped": "completed" if last else ""})
        try:
            os.close(os.open(here / "signalled", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        os.kill(int((here / "driver.pid").read_text()), signal.SIGUSR1)
        time.sleep(60)  # until the driver stops it


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rank-asha", "asha"])
def test_a_resumed_search_reports_the_scheduler_tune_ran(ray_session, tmp_path, monkeypatch, name):
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(trials=4, max_epochs=3, trial_budget_s=60, cpus_per_trial=1, scheduler=name)
    experiment_dir = tmp_path / "results" / "resumed"
    (tmp_path / "driver.pid").write_text(str(os.getpid()))
    monkeypatch.setattr(sys.modules[__name__], "SIGNAL_DIR", str(tmp_path))
    tuner = build_tuner(space, settings, tiny_data(), experiment_dir, trial_fn=interrupting_trial)
    first = tuner.fit()
    assert (tmp_path / "signalled").exists()
    assert sum(r.error is None and r.metrics.get("stopped") == "completed" for r in first) < 4

    restored = restore_tuner(space, settings, tiny_data(), experiment_dir, trial_fn=interrupting_trial)
    assert isinstance(restored.scheduler, KINDS[name])
    restored.fit()
    rule = stopping_rule(restored.scheduler)
    # The handle is the scheduler Tune ran after the resume, not a fresh one: it saw the trials
    # that ran again reach their horizon (a fresh rank-asha says "on 0 trials", a fresh ASHA "None").
    if name == "rank-asha":
        assert restored.scheduler.pairs[1] and "report 1 vs 3: rho=n/a on 0 trials" not in rule
    else:
        assert "Iter 1.000: None" not in rule, rule
