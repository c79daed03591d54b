"""--max-failures: a trial whose worker dies mid-way goes on from its latest report's checkpoint.

The loop's state at a report is enough to go on exactly as the run would have (tested without
Ray); in a real search, a trial whose worker is killed after its 2nd report is retried from that
report's checkpoint, reports each epoch once, and keeps one MLflow run and one model.
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import mlflow
import pytest
import ray
import ray.cloudpickle
import torch
from ray import tune
from ray.tune import Checkpoint
from search_helpers import tiny_data, write_tiny_space

from hpsearch.search import trainable
from hpsearch.search.space import load_space
from hpsearch.search.tracking import MlflowTracker
from hpsearch.search.trainable import EXAMPLE_FILE, INFO_FILE, MODEL_FILE, RESUME_FILE, keep_checkpoints
from hpsearch.search.tuner import SearchSettings, build_tuner
from hpsearch.trainables.loop import BUDGET, COMPLETED, Horizon, train
from hpsearch.trainables.tasks import get_task

# Tune pickles the search's callbacks into its state: send this module's by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

MNIST = get_task("mnist")
CPU = torch.device("cpu")
DATA = tiny_data()
KEPT = sorted([MODEL_FILE, INFO_FILE, EXAMPLE_FILE])
COMPARED = ("epoch", "epochs_done", "train_loss", "train_acc", "val_loss", "val_acc", "lr")


def tiny_config(tmp_path, **params):
    space = load_space(write_tiny_space(tmp_path))
    return SearchSettings(max_epochs=2).trial_config(MNIST, space.baseline, params)


def saved(state: dict) -> dict:
    """``state`` as a checkpoint hands it back: written, and read in another process."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, map_location="cpu", weights_only=True)


# The loop, without Ray


@pytest.mark.parametrize("reports_per_epoch", [1, 2])
def test_train_from_a_reports_state_goes_on_exactly_as_the_run_did(
    one_torch_thread, tmp_path, reports_per_epoch
):
    # Dropout and augmentation draw random numbers; at 2 reports an epoch the state is mid-epoch.
    config = tiny_config(tmp_path, lr=3e-3, dropout=0.2, augment="affine", schedule="cosine")
    horizon = Horizon(2, reports_per_epoch)
    states, whole = [], []
    # Saved as it comes: the state's tensors are the run's own, which its next step changes.
    keep = lambda state: states.append(saved(state))  # noqa: E731
    train(MNIST, config, DATA, device=CPU, horizon=horizon, on_epoch=whole.append, on_state=keep)
    assert len(states) == len(whole) - 1  # none on the last report: nothing goes on from it

    rest = []
    result = train(MNIST, config, DATA, device=CPU, horizon=horizon, on_epoch=rest.append, start=states[0])
    assert [r["epoch"] for r in rest] == [r["epoch"] for r in whole[1:]]
    for went_on, did in zip(rest, whole[1:], strict=True):
        assert {k: went_on[k] for k in COMPARED} == {k: did[k] for k in COMPARED}
    # The earlier reports are the resumed run's history too: its best report may be among them.
    assert [r["epoch"] for r in result.history] == [r["epoch"] for r in whole]
    assert result.best_val_acc == max(r["val_acc"] for r in whole)


def test_a_resumed_run_counts_the_time_it_had_trained_in_its_budget(one_torch_thread, tmp_path):
    config = tiny_config(tmp_path)
    states = []
    keep = lambda state: states.append(saved(state))  # noqa: E731
    train(MNIST, config, DATA, device=CPU, horizon=Horizon(2), on_state=keep, budget_s=60)
    (start,) = states
    assert start["elapsed_s"] < 30

    def resume(elapsed_s: float) -> tuple[str, list[dict]]:
        reports = []
        state = {**start, "elapsed_s": elapsed_s}
        result = train(
            MNIST,
            config,
            DATA,
            device=CPU,
            horizon=Horizon(2),
            on_epoch=reports.append,
            start=state,
            budget_s=60,
        )
        return result.stopped, reports

    # Had it trained all of its 60 s before it failed, it goes on for a last batch and stops.
    stopped, reports = resume(elapsed_s=60.0)
    assert stopped == BUDGET and len(reports) == 1 and reports[0]["time_total_s"] >= 60
    # With the time it really had trained, it completes.
    stopped, reports = resume(elapsed_s=start["elapsed_s"])
    assert stopped == COMPLETED and reports[0]["time_total_s"] >= start["elapsed_s"]


def test_trial_checkpoints_each_report_only_when_it_may_be_retried(monkeypatch, one_torch_thread, tmp_path):
    reports = []

    def report(metrics, checkpoint=None):  # (the folder is gone once report returns)
        files = sorted(p.name for p in Path(checkpoint.path).iterdir()) if checkpoint else []
        reports.append((metrics["epoch"], files))

    monkeypatch.setattr(trainable.tune, "report", report)
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: None)
    space = load_space(write_tiny_space(tmp_path))
    for max_failures, mid in ((1, [RESUME_FILE]), (0, [])):
        reports.clear()
        settings = SearchSettings(
            max_epochs=3, trial_budget_s=60, cpus_per_trial=1, max_failures=max_failures
        )
        trainable.run_trial({}, data=DATA, task_name="mnist", baseline=space.baseline, settings=settings)
        # Each report but the last carries the state to go on from; the last, the kept model.
        assert reports == [(1, mid), (2, mid), (3, KEPT)], max_failures


def test_trial_goes_on_from_the_checkpoint_tune_hands_it_back(monkeypatch, one_torch_thread, tmp_path):
    reports = []

    def report(metrics, checkpoint=None):  # keeps a copy of each checkpoint, as Tune's storage does
        copy = None
        if checkpoint is not None:
            copy = tmp_path / "storage" / f"checkpoint_{len(list(tmp_path.glob('storage/*'))):06d}"
            shutil.copytree(checkpoint.path, copy)
        reports.append((metrics, copy))

    handed_back = []
    monkeypatch.setattr(trainable.tune, "report", report)
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: handed_back[-1] if handed_back else None)
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(max_epochs=3, trial_budget_s=60, cpus_per_trial=1, max_failures=1)

    def run() -> list[dict]:
        reports.clear()
        trainable.run_trial({}, data=DATA, task_name="mnist", baseline=space.baseline, settings=settings)
        return [metrics for metrics, _ in reports]

    whole, folders = run(), [folder for _, folder in reports]
    handed_back.append(Checkpoint.from_directory(folders[0]))  # retried after its 1st report
    went_on = run()
    assert [m["epoch"] for m in went_on] == [2, 3]
    for key in ("val_acc", "train_loss", "epochs_done"):
        assert [m[key] for m in went_on] == [m[key] for m in whole[1:]], key
    assert sorted(p.name for p in reports[-1][1].iterdir()) == KEPT  # and keeps its model at its end
    # Handed back its kept model, the trial had already made its last report: nothing to do.
    handed_back.append(Checkpoint.from_directory(folders[-1]))
    assert run() == []


# A real search


class KillOnce(tune.Callback):
    """Kills a trial's worker once, as soon as Tune holds its checkpoint of report ``at`` (a node
    preempted, a worker killed by the kernel)."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.killed: list[str] = []

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        if not self.killed and trial.last_result.get("training_iteration") == self.at:
            self.killed.append(trial.trial_id)
            ray.kill(trial.temporary_state.ray_actor, no_restart=True)


@pytest.mark.slow
def test_a_trial_killed_mid_way_goes_on_from_its_checkpoint(ray_session, one_torch_thread, tmp_path):
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(trials=1, max_epochs=4, trial_budget_s=120, cpus_per_trial=1, max_failures=1)
    experiment_dir = tmp_path / "results" / "retried"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(
        space, settings, experiment_dir, tracking_uri=uri, experiment=None, command="pytest", quick=True
    )
    killer = KillOnce(at=2)
    results = build_tuner(space, settings, DATA, experiment_dir, callbacks=[tracker, killer]).fit()
    (result,) = results
    assert killer.killed == [result.metrics["trial_id"]]  # it was killed, and then
    assert results.num_errors == 0 and result.metrics["stopped"] == COMPLETED  # ...finished
    history = result.metrics_dataframe
    assert history["epoch"].tolist() == [1, 2, 3, 4]  # each epoch reported once
    # Its budget's clock went on from the checkpoint's time: it did not start again at 0.
    assert history["time_total_s"].is_monotonic_increasing

    # It went on exactly as the trial would have run without the kill.
    config = settings.trial_config(MNIST, space.baseline, {})
    whole = []
    horizon = Horizon(settings.max_epochs, fit_budget=True)
    train(MNIST, config, DATA, device=CPU, horizon=horizon, on_epoch=whole.append, budget_s=120)
    for key in ("val_acc", "val_loss", "train_loss"):
        assert history[key].tolist() == pytest.approx([r[key] for r in whole], rel=1e-5), key

    # One MLflow run holds the whole trial: each epoch once, finished.
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("mnist").experiment_id
    (run,) = client.search_runs([experiment], "tags.`hpsearch.role` = 'trial'")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
    assert steps == [1, 2, 3, 4]
    assert run.info.status == "FINISHED" and run.data.tags["hpsearch.fate"] == COMPLETED

    # Tune kept one checkpoint, the trial's model: the states it went on from are gone.
    (left,) = experiment_dir.glob("*/checkpoint_*")
    assert sorted(p.name for p in left.iterdir()) == KEPT
    (kept,) = keep_checkpoints(results, [result.metrics["trial_id"]])
    assert Path(kept.checkpoint.path) == left
