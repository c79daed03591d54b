"""Data provenance: the digest of what a model sees, on every run of a search, in every export,
and checked by a retrain.

The search is logged by the real MlflowTracker (stand-in trials, no Ray) to a SQLite store; the
data is tiny MNIST in the real on-disk format, read by the real loaders and cache.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mlflow import MlflowClient

from hpsearch.search import export, train
from hpsearch.search.data import load_space_data
from hpsearch.search.exported import ExportedConfig, read_exported
from hpsearch.search.provenance import DATA_DIGEST_TAG, DATA_SOURCE_TAG, DIGEST_CHARS, DataIdentity
from hpsearch.search.retrain import warn_if_other_data
from hpsearch.search.space import load_space
from hpsearch.search.tracking import MlflowTracker
from hpsearch.search.tuner import SearchSettings
from hpsearch.trainables.data.registry import prepare
from hpsearch.trainables.data.splits import Split, Splits
from hpsearch.trainables.tasks import VAL_SIZE
from tests.fake_datasets import write_mnist

SEARCH = "mnist-20261202-020000"
SPACE = """
TASK = "mnist"
METRIC = "val_acc"
MODE = "max"
BUDGET_S = 60
MAX_EPOCHS = 2
BASELINE = {"lr": 3e-3, "batch_size": 32, "epochs": 2, "channels": 4, "fc1": 32, "fc2": 16}
QUICK = {"train_per_class": 20, "val_per_class": 10, "max_epochs": 2, "budget_s": 30}


def space(trial):
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
"""


def small_splits() -> Splits:
    gen = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        x = torch.randint(0, 256, (n, 1, 8, 8), generator=gen, dtype=torch.uint8)
        return Split(x, torch.arange(n) % 3)

    return Splits(split(12), split(6), split(6), ["a", "b", "c"], source="made by a test")


def changed(splits: Splits, change) -> Splits:
    """A deep copy of ``splits`` with ``change`` applied to it."""
    copy = pickle.loads(pickle.dumps(splits))
    change(copy)
    return copy


# The digest


def test_digest_changes_with_one_pixel_one_label_or_one_class_name():
    data = small_splits()

    def pixel(s: Splits) -> None:
        s.test.x[3, 0, 4, 4] ^= 1

    def label(s: Splits) -> None:
        s.val.y[0] = (s.val.y[0] + 1) % 3

    def name(s: Splits) -> None:
        s.classes[2] = "C"

    def shape(s: Splits) -> None:  # the same bytes, seen as other images
        s.train = Split(s.train.x.reshape(12, 1, 4, 16), s.train.y)

    digests = {data.digest()} | {changed(data, c).digest() for c in (pixel, label, name, shape)}
    assert len(digests) == 5


def test_digest_is_of_the_data_not_of_its_source_or_device_copy():
    data = small_splits()
    assert changed(data, lambda s: setattr(s, "source", "elsewhere")).digest() == data.digest()
    assert data.to("cpu").digest() == data.digest() and data.to("cpu").source == data.source


def test_splits_keep_their_source_through_the_cache_and_pickling(tmp_path):
    data = small_splits()
    data.save(tmp_path / "cache.pt")
    again = Splits.load(tmp_path / "cache.pt")
    assert again.digest() == data.digest() and again.source == "made by a test"
    # Ray's object store pickles the splits into each trial.
    assert pickle.loads(pickle.dumps(data)).source == "made by a test"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Two tiny MNIST folders that differ only in their pixels (another seed), and a space."""
    root = tmp_path_factory.mktemp("provenance")
    write_mnist(root / "data", n_train=VAL_SIZE["mnist"] + 500, n_test=100, seed=0)
    write_mnist(root / "other", n_train=VAL_SIZE["mnist"] + 500, n_test=100, seed=1)
    (root / "tiny_mnist.py").write_text(SPACE)
    return root


def test_digest_is_stable_across_loads_and_caches_and_says_its_source(root, tmp_path):
    load = lambda cache: prepare("mnist", root / "data", cache_dir=cache, download=False, val_size=50)  # noqa: E731
    fresh, cached, rebuilt = load(tmp_path / "a"), load(tmp_path / "a"), load(tmp_path / "b")
    assert fresh.digest() == cached.digest() == rebuilt.digest()
    assert fresh.source == cached.source == rebuilt.source
    assert fresh.source.startswith("mnist (torchvision) ") and fresh.source.endswith("[val_size=50, seed=0]")
    other = prepare("mnist", root / "other", cache_dir=tmp_path / "a", download=False, val_size=50)
    assert other.digest() != fresh.digest()


def test_quick_data_says_which_subset_it_is(root):
    space = load_space(root / "tiny_mnist.py")
    data = load_space_data(space, root / "data", cache_dir=root / "cache", quick=True, download=False)
    assert data.source.endswith("; quick subset train_per_class=20, val_per_class=10")
    assert len(data.train) == 200 and len(data.val) == 100


# A search's runs and its export


@pytest.fixture(scope="module")
def search(root) -> SimpleNamespace:
    """A one-trial search as MlflowTracker logs it, on the quick data of ``root/data``."""
    space = load_space(root / "tiny_mnist.py")
    data = load_space_data(space, root / "data", cache_dir=root / "cache", quick=True, download=False)
    identity = DataIdentity.of(data)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    settings = SearchSettings(trials=1, trial_budget_s=30, max_epochs=2)
    trial = SimpleNamespace(trial_id="t_00000", config={}, last_result={})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the store's artifacts go to ./mlruns: here, not in the repository
        tracker = MlflowTracker(
            space,
            settings,
            root / SEARCH,
            tracking_uri=uri,
            experiment=None,
            command="pytest",
            quick=True,
            data=identity,
        )
        tracker.setup()
        tracker.on_trial_start(0, [], trial)
        for epoch in (1, 2):
            trial.last_result = {
                "training_iteration": epoch,
                "epoch": epoch,
                "val_acc": epoch / 4,
                "time_total_s": epoch,
            }
            trial.last_result.update(stopped="completed" if epoch == 2 else "", horizon_epochs=2.0)
            tracker.on_trial_result(0, [], trial, trial.last_result)
        tracker.on_trial_complete(0, [], trial)
        tracker.finish({"val_acc": 0.5}, [])
    client = MlflowClient(uri)
    (best,) = export.export_search(client, "mnist", SEARCH, 1, root / "exports", command="pytest")
    return SimpleNamespace(uri=uri, client=client, identity=identity, tracker=tracker, best=best)


def runs_with_role(client: MlflowClient, role: str) -> list:
    experiment = client.get_experiment_by_name("mnist")
    return client.search_runs([experiment.experiment_id], f"tags.`hpsearch.role` = '{role}'")


def test_tracker_tags_the_search_and_every_trial_with_the_data(search):
    (parent,) = runs_with_role(search.client, "search")
    (trial,) = runs_with_role(search.client, "trial")
    assert len(search.identity.digest) == DIGEST_CHARS
    assert search.identity.digest == search.identity.digest.lower() and int(search.identity.digest, 16) >= 0
    for run in (parent, trial):
        assert run.data.tags[DATA_DIGEST_TAG] == search.identity.digest
        assert run.data.tags[DATA_SOURCE_TAG] == search.identity.source
        assert "mnist (torchvision)" in run.data.tags[DATA_SOURCE_TAG]
        # The same, as MLflow's own dataset input (the runs table's Dataset column).
        (dataset_input,) = search.client.get_run(run.info.run_id).inputs.dataset_inputs
        assert dataset_input.dataset.name == "mnist"
        assert dataset_input.dataset.digest == search.identity.digest


def test_tracker_keeps_its_data_through_the_tuner_pickle(search):
    again = pickle.loads(pickle.dumps(search.tracker))  # --resume unpickles the tracker
    assert again.data == search.identity
    state = search.tracker.__getstate__()
    del state["data"]  # a tracker pickled by a search from before data was tracked
    old = MlflowTracker.__new__(MlflowTracker)
    old.__setstate__(state)
    assert old.data is None


def test_export_carries_the_searchs_data_digest_and_source(search):
    best = read_exported(search.best)
    assert best.data_digest == search.identity.digest and best.data_source == search.identity.source


# A retrain checks its data against the export's


def test_warn_if_other_data_speaks_only_of_a_recorded_and_different_digest(capsys):
    now = DataIdentity("a" * DIGEST_CHARS, "here")
    exported = lambda digest: ExportedConfig(task="mnist", config={}, space="s.py", data_digest=digest)  # noqa: E731
    assert not warn_if_other_data(exported(""), now)  # an older export: nothing to compare
    assert not warn_if_other_data(exported("a" * DIGEST_CHARS), now)
    assert capsys.readouterr().err == ""
    assert warn_if_other_data(exported("b" * DIGEST_CHARS), now)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"warning: this data differs from the search's (digest {'a' * 16} vs {'b' * 16})")


def retrain_cli(search, root: Path, data_dir: str, capsys) -> tuple[dict, str, object]:
    args = [
        *("--config", str(search.best), "--space", str(root / "tiny_mnist.py")),
        *("--data-dir", str(root / data_dir), "--cache-dir", str(root / "cache"), "--gpus", "0"),
        *("--offline", "--epochs", "1", "--tracking-uri", search.uri),
    ]
    assert train.main(args) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out.strip().splitlines()[-1])
    (run_id,) = summary["mlflow_runs"]
    return summary, out.err, search.client.get_run(run_id)


def test_retrain_on_the_searchs_data_is_quiet_and_says_it_matches(search, root, capsys, one_torch_thread):
    summary, err, run = retrain_cli(search, root, "data", capsys)
    assert "differs" not in err
    assert summary["data_digest"] == summary["search_data_digest"] == search.identity.digest
    assert not summary["data_differs"]
    assert run.data.tags[DATA_DIGEST_TAG] == search.identity.digest
    assert run.data.tags["hpsearch.data_matches_search"] == "true"


def test_retrain_on_other_data_warns_once_and_records_both_digests(search, root, capsys, one_torch_thread):
    summary, err, run = retrain_cli(search, root, "other", capsys)
    warnings = [line for line in err.splitlines() if line.startswith("warning: this data differs")]
    assert len(warnings) == 1  # once, not once per seed or per epoch
    assert search.identity.digest in warnings[0] and summary["data_digest"] in warnings[0]
    assert summary["data_differs"] and summary["data_digest"] != search.identity.digest
    tags = run.data.tags
    assert tags[DATA_DIGEST_TAG] == summary["data_digest"] and str(root / "other") in tags[DATA_SOURCE_TAG]
    assert tags["hpsearch.search_data_digest"] == search.identity.digest
    assert tags["hpsearch.data_matches_search"] == "false"


def test_retrain_of_an_export_without_a_digest_skips_the_check(search, root, capsys, one_torch_thread):
    old = read_exported(search.best)
    old.data_digest = old.data_source = ""
    older = root / "older.yaml"
    older.write_text("".join(line for line in old.to_yaml().splitlines(True) if not line.startswith("data_")))
    summary, err, run = retrain_cli(SimpleNamespace(**{**vars(search), "best": older}), root, "other", capsys)
    assert "differs" not in err and summary["search_data_digest"] is None and not summary["data_differs"]
    assert "hpsearch.data_matches_search" not in run.data.tags
