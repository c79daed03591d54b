"""Export, retrain and ensemble: from a search's MLflow runs to test accuracy.

The store is written by the real MlflowTracker (driven with stand-in trials, no Ray), so the
exporter reads exactly what a search writes; retraining runs on tiny MNIST files in the real
on-disk format.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from mlflow import MlflowClient

from hpsearch.plumbing import tags as tag
from hpsearch.plumbing.errors import UsageError
from hpsearch.search import ensemble, export
from hpsearch.search.exported import ExportedConfig, read_exported
from hpsearch.search.retrain import load_export_data, retrain, with_val_in_train
from hpsearch.search.space import load_space
from hpsearch.search.tracking import MlflowTracker
from hpsearch.search.tuner import SearchSettings
from hpsearch.trainables.tasks import TASKS, VAL_SIZE
from tests.fake_datasets import write_mnist
from tests.search_helpers import random_splits

REPO = Path(__file__).resolve().parents[1]
SEARCH = "mnist-20261123-120000"
SPACE = """
TASK = "mnist"
METRIC = "val_acc"
MODE = "max"
BUDGET_S = 60
MAX_EPOCHS = 2
BASELINE = {"lr": 3e-3, "batch_size": 32, "epochs": 2, "channels": 4, "fc1": 32, "fc2": 16}
QUICK = {"train_per_class": 20, "max_epochs": 2, "budget_s": 30}


def space(trial):
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [16, 32, 64])
"""
# trial id, searched values, val_acc per epoch, how it ended (its last report's `stopped`), and
# the horizon its schedule ran over (trials report at quarter epochs: t_00001's budget fitted 1.75)
TRIALS = [
    ("t_00000", {}, [0.50, 0.60], "completed", 2.0),  # the seed's baseline
    ("t_00001", {"lr": 5e-3, "batch_size": 16}, [0.70, 0.80], "completed", 1.75),
    ("t_00002", {"lr": 1e-4, "batch_size": 64}, [0.95], "", 2.0),  # ASHA-pruned: never exported
    ("t_00003", {"lr": 2e-3, "batch_size": 64}, [0.65, 0.70], "budget", 2.0),
]
RANKED = ["t_00001", "t_00003", "t_00000"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    write_mnist(root / "data", n_train=VAL_SIZE["mnist"] + 500, n_test=100)
    (root / "tiny_mnist.py").write_text(SPACE)
    return root


@pytest.fixture(scope="module")
def store(root) -> str:
    """A search as MlflowTracker logs it: a parent run and four nested trial runs."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    space = load_space(root / "tiny_mnist.py")
    settings = SearchSettings(trials=len(TRIALS), trial_budget_s=30, max_epochs=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the store's artifacts go to ./mlruns: here, not in the repository
        tracker = MlflowTracker(
            space, settings, root / SEARCH, tracking_uri=uri, experiment=None, command="pytest", quick=True
        )
        tracker.setup()
    for trial_id, params, accs, stopped, horizon in TRIALS:
        trial = SimpleNamespace(trial_id=trial_id, config=params, last_result={})
        tracker.on_trial_start(0, [], trial)
        for epoch, acc in enumerate(accs, 1):
            last = epoch == len(accs)
            trial.last_result = {
                "training_iteration": epoch,
                "epoch": epoch,
                "val_acc": acc,
                "time_total_s": epoch,
                "stopped": "",
            }
            trial.last_result.update(stopped=stopped if last else "", horizon_epochs=horizon if last else 2.0)
            tracker.on_trial_result(0, [], trial, trial.last_result)
        tracker.on_trial_complete(0, [], trial)
    tracker.finish({"val_acc": 0.8}, [])
    return uri


@pytest.fixture(scope="module")
def exported(root, store) -> list[Path]:
    return export.export_search(MlflowClient(store), "mnist", SEARCH, 3, root / "exports", command="pytest")


def runs_with_role(uri: str, role: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("mnist")
    return client.search_runs([experiment.experiment_id], f"tags.`hpsearch.role` = '{role}'")


def test_export_writes_the_best_finished_trials_in_rank_order(exported, store):
    assert [p.name for p in exported] == ["best.yaml", "rank2.yaml", "rank3.yaml"]
    configs = [read_exported(p) for p in exported]
    # The pruned trial's lucky 0.95 is not a finished result: it is never exported.
    assert [c.trial_id for c in configs] == RANKED
    assert [c.value for c in configs] == [0.80, 0.70, 0.60]
    assert [c.baseline for c in configs] == [False, False, True]
    trial_runs = {r.data.tags[tag.TRIAL_ID]: r.info.run_id for r in runs_with_role(store, "trial")}
    assert [c.run_id for c in configs] == [trial_runs[t] for t in RANKED]


def test_export_holds_the_full_typed_config_and_its_provenance(exported, root, store):
    best = read_exported(exported[0])
    # Every resolved value, with its type: lr a float, batch_size an int (not the string params).
    assert best.config["lr"] == 5e-3 and best.config["batch_size"] == 16 and best.config["channels"] == 4
    assert "weight_decay" in best.config
    # Its epochs are the horizon its schedule ran over (its last report's), not the search's 2,
    # so a retrain runs the same schedule.
    assert best.config["epochs"] == 1.75 and read_exported(exported[1]).config["epochs"] == 2
    assert best.weights == "" and best.classes == []  # stand-in trials kept no model
    assert best.task == "mnist" and best.metric == "val_acc" and best.best_epoch == 2
    assert Path(best.space) == root / "tiny_mnist.py" and best.quick and best.budget_s == 30
    assert best.search == SEARCH and best.tracking_uri == store and best.code_version
    assert best.search_run_id == runs_with_role(store, "search")[0].info.run_id
    # The file says how it was made and how to retrain it.
    assert exported[0].read_text().startswith("# Exported by `pytest`.\n# Retrain: python search/train.py")


def test_export_of_a_shorter_top_leaves_no_stale_files(root, store, tmp_path):
    client = MlflowClient(store)
    export.export_search(client, "mnist", SEARCH, 3, tmp_path, command="pytest")
    export.export_search(client, "mnist", SEARCH, 1, tmp_path, command="pytest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.yaml"]


def test_export_of_an_unknown_search_is_a_usage_error(store, tmp_path):
    with pytest.raises(UsageError, match="no search 'nope'"):
        export.export_search(MlflowClient(store), "mnist", "nope", 1, tmp_path, command="pytest")


def test_read_exported_rejects_broken_files(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        read_exported(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(UsageError, match="mapping"):
        read_exported(tmp_path / "list.yaml")
    (tmp_path / "short.yaml").write_text("task: mnist\n")
    with pytest.raises(UsageError, match="lacks config, space"):
        read_exported(tmp_path / "short.yaml")
    (tmp_path / "stale.yaml").write_text("task: mnist\nspace: s.py\nconfig: {no_such_knob: 1}\n")
    with pytest.raises(UsageError, match="unknown config key 'no_such_knob'"):
        read_exported(tmp_path / "stale.yaml").resolved()


def test_export_data_is_the_searchs_quick_data_unless_asked_for_all(exported, root):
    best = read_exported(exported[0])
    quick = load_export_data(
        best, root / "data", cache_dir=root / "cache", download=False, space_file=best.space
    )
    full = load_export_data(
        best, root / "data", cache_dir=root / "cache", download=False, full_data=True, space_file=best.space
    )
    assert len(quick.train) == 10 * 20 and len(full.train) == 500
    assert len(quick.test) == len(full.test) == 100
    both = with_val_in_train(quick)
    assert len(both.train) == len(quick.train) + len(quick.val)
    assert torch.equal(both.train.x[len(quick.train) :], quick.val.x)


def test_export_space_is_a_builtin_space_by_name_and_never_the_file_it_names(exported, root):
    best = read_exported(exported[0])  # its search's space is root/tiny_mnist.py: not a built-in one
    with pytest.raises(UsageError, match="tiny_mnist.py is not among the built-in spaces"):
        best.load_space()
    # `train --config X --space mnist`: a bare name is the built-in space, as --space takes everywhere.
    assert best.load_space("mnist").path == REPO / "spaces" / "mnist.py"
    full = load_export_data(
        best, root / "data", cache_dir=root / "cache", download=False, full_data=True, space_file="mnist"
    )
    assert len(full.train) == 500 and len(full.test) == 100  # the tiny MNIST files, by the built-in space
    # An export from another checkout names its space file there; only its name is looked up, here.
    moved = ExportedConfig(task="mnist", config={}, space="/elsewhere/hpsearch/spaces/mnist.py")
    assert moved.load_space().path == REPO / "spaces" / "mnist.py"


def test_retrain_cli_prints_test_accuracy_over_seeds_and_logs_final_runs(exported, root, store):
    command = [
        *(sys.executable, "search/train.py", "--config", str(exported[0]), "--seeds", "2"),
        *("--data-dir", str(root / "data"), "--cache-dir", str(root / "cache"), "--gpus", "0", "--offline"),
        # The test's own space file and store: an export names both, but is never trusted with them.
        *("--space", read_exported(exported[0]).space, "--tracking-uri", store),
    ]
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["seeds"] == [0, 1] and len(summary["test_accs"]) == 2
    assert summary["test_acc"] == pytest.approx(sum(summary["test_accs"]) / 2)
    assert "test accuracy" in done.stderr and "+-" in done.stderr

    finals = {r.info.run_id: r for r in runs_with_role(store, "final")}
    assert set(summary["mlflow_runs"]) <= set(finals)
    best = read_exported(exported[0])
    for run_id, seed in zip(summary["mlflow_runs"], [0, 1], strict=True):
        run = finals[run_id]
        assert run.info.status == "FINISHED"
        assert run.data.tags[tag.SOURCE_RUN] == best.run_id
        assert run.data.tags[tag.SEED] == str(seed)
        # Nested under the search's run, beside its trials in the MLflow UI.
        assert run.data.tags["mlflow.parentRunId"] == best.search_run_id
        assert run.data.metrics["test_acc"] == pytest.approx(summary["test_accs"][seed])
        history = MlflowClient(store).get_metric_history(run_id, "val_acc")
        assert sorted(m.step for m in history) == list(range(1, summary["epochs"][seed] + 1))


def test_retrain_on_train_and_val_keeps_the_last_epoch(exported, root, one_torch_thread):
    best = read_exported(exported[0])
    data = load_export_data(
        best, root / "data", cache_dir=root / "cache", download=False, space_file=best.space
    )
    done = retrain(
        best, data, device=torch.device("cpu"), seed=0, budget_s=60, train_on_val=True, track=False
    )
    assert done.run_id is None and len(done.result.history) == 2
    assert done.test_probs.shape == (100, 10)
    # The model is the last epoch's: its accuracy on val (now trained on) is the last report's.
    last_val = done.result.history[-1]["val_acc"]
    from hpsearch.trainables.loop import evaluate

    assert evaluate(done.result.model, data.val, done.exported.resolved()[0])[1] == pytest.approx(last_val)


def test_ensemble_accuracy_averages_softmax_outputs():
    labels = torch.tensor([0, 1, 2])
    # Each member is confidently wrong once, on a different image; their average is right on all.
    a = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.6, 0.3], [0.6, 0.0, 0.4]])
    b = torch.tensor([[0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    c = torch.tensor([[0.8, 0.1, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    accuracy = lambda p: (p.argmax(1) == labels).float().mean().item()  # noqa: E731
    assert [accuracy(p) for p in (a, b, c)] == pytest.approx([2 / 3] * 3)
    loss, acc = ensemble.ensemble_accuracy([a, b, c], labels)
    assert acc == 1.0 and loss > 0


def test_ensemble_cli_reports_the_ensemble_beside_each_member(
    exported, root, store, capsys, monkeypatch, one_torch_thread
):
    # Each member's softmax outputs on test and the labels, as the CLI retrained it.
    outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def retrain_and_keep_outputs(exported, data, **kwargs):
        done = retrain(exported, data, **kwargs)
        outputs.append((done.test_probs, data.test.y))
        return done

    monkeypatch.setattr(ensemble, "retrain", retrain_and_keep_outputs)
    args = [
        *("--config", str(exported[0].parent), "--data-dir", str(root / "data")),
        *("--cache-dir", str(root / "cache"), "--gpus", "0", "--offline"),
        *("--space", read_exported(exported[0]).space, "--tracking-uri", store),
    ]
    assert ensemble.main(args) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out.strip().splitlines()[-1])
    # The folder's configs, best first.
    assert [m["config"] for m in summary["members"]] == RANKED
    # Accuracies recomputed here from the members' outputs, not read back from the same summary.
    accuracy = lambda probs, labels: (probs.argmax(1) == labels).float().mean().item()  # noqa: E731
    member_accs = [accuracy(probs, labels) for probs, labels in outputs]
    assert [m["test_acc"] for m in summary["members"]] == pytest.approx(member_accs)
    assert summary["best_member_test_acc"] == pytest.approx(max(member_accs))
    mean_probs = torch.stack([probs for probs, _ in outputs]).mean(0)
    assert summary["test_acc"] == pytest.approx(accuracy(mean_probs, outputs[0][1]))
    assert "ensemble of 3" in out.err
    run = MlflowClient(store).get_run(summary["mlflow_run"])
    assert run.data.tags[tag.ROLE] == "ensemble"
    assert run.data.metrics["test_acc"] == pytest.approx(summary["test_acc"])
    assert run.data.tags[tag.MEMBERS].split(",") == [m["mlflow_run"] for m in summary["members"]]
    assert run.data.tags["mlflow.parentRunId"] == read_exported(exported[0]).search_run_id


def test_ensemble_needs_two_configs_of_one_task(exported, tmp_path):
    with pytest.raises(UsageError, match="at least two"):
        ensemble.main(["--config", str(exported[0])])
    other = yaml.safe_load(exported[1].read_text()) | {"task": "cifar10"}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    with pytest.raises(UsageError, match="different tasks"):
        ensemble.main(["--config", str(exported[0]), "--config", str(tmp_path / "other.yaml")])


def test_export_cli_writes_files_and_names_the_retrain_command(store, tmp_path):
    command = [
        *(sys.executable, "search/export.py", "--tracking-uri", store, "--experiment", "mnist"),
        *("--top", "2", "--out", str(tmp_path)),
    ]
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.yaml", "rank2.yaml"]
    assert f"python search/train.py --config {tmp_path / 'best.yaml'}" in done.stderr
    bad = subprocess.run(
        [*command[:4], "--experiment", "nope"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: no experiment 'nope'")


# A search that minimises val_loss


def test_export_of_a_search_minimising_val_loss_keeps_its_metric_and_mode(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the store's artifacts go to ./mlruns
    space_file = tmp_path / "by_loss.py"
    by_loss = SPACE.replace('METRIC = "val_acc"\nMODE = "max"', 'METRIC = "val_loss"\nMODE = "min"')
    space_file.write_text(by_loss)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = SearchSettings(trials=2, trial_budget_s=30, max_epochs=2)
    space = load_space(space_file)
    where = tmp_path / "by-loss"
    tracker = MlflowTracker(space, settings, where, tracking_uri=uri, experiment=None, command="", quick=True)
    tracker.setup()
    for trial_id, losses in (("t_00000", [0.9, 0.5]), ("t_00001", [0.7, 0.6])):
        trial = SimpleNamespace(trial_id=trial_id, config={}, last_result={})
        tracker.on_trial_start(0, [], trial)
        for epoch, loss in enumerate(losses, 1):
            stopped = "completed" if epoch == len(losses) else ""
            trial.last_result = {"training_iteration": epoch, "epoch": epoch, "val_loss": loss}
            trial.last_result["stopped"] = stopped
            tracker.on_trial_result(0, [], trial, trial.last_result)
        tracker.on_trial_complete(0, [], trial)
    tracker.finish({"val_loss": 0.5}, [])
    (path,) = export.export_search(MlflowClient(uri), "mnist", "by-loss", 1, tmp_path / "out", command="t")
    best = read_exported(path)
    # Ranked by the lowest loss (t_00000's 0.5), and the retrain told to keep its lowest-loss epoch.
    assert (best.metric, best.mode, best.trial_id, best.value) == ("val_loss", "min", "t_00000", 0.5)


def test_retrain_keeps_the_epoch_best_by_the_exports_metric(one_torch_thread):
    config = {"epochs": 3, "batch_size": 16, "channels": 4, "fc1": 16, "fc2": 16}
    exported = ExportedConfig(task="mnist", config=config, space="s.py", metric="val_loss", mode="min")
    data = random_splits(TASKS["mnist"], 64, 32)
    done = retrain(exported, data, device=torch.device("cpu"), seed=0, budget_s=60, track=False)
    losses = [r["val_loss"] for r in done.result.history]
    assert len(set(losses)) == 3  # (the setup: three different losses to choose from)
    assert done.result.metric == "val_loss" and done.result.best_value == min(losses)
    assert losses[done.result.best_epoch - 1] == min(losses)

