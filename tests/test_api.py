"""hpsearch.run_search: the search as a Python call, with the command's defaults and checks."""

from __future__ import annotations

import json
import shlex

import pytest
from mlflow import MlflowClient
from search_helpers import write_tiny_space

import hpsearch
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.run import parse_args
from hpsearch.trainables.fates import FINISHED_FATES
from tests.fake_datasets import write_mnist


@pytest.mark.slow
def test_run_search_returns_the_best_finished_trial(ray_session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_mnist(tmp_path / "data", n_train=5200, n_test=100)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = hpsearch.run_search(
        write_tiny_space(tmp_path),
        gpus=0,
        trials=3,
        max_epochs=1,
        keep_models=1,
        data_dir=str(tmp_path / "data"),  # a str, as a user passes it: typed as the command types it
        cache_dir=tmp_path / "cache",
        results_dir=tmp_path / "results",
        name="api",
        tracking_uri=store,
        offline=True,
    )
    assert result.experiment_dir == tmp_path / "results" / "api" and result.name == "api"
    assert len(result.trials) == 3 and not result.interrupted
    finished = result.trials[result.trials["fate"].isin(FINISHED_FATES)]
    assert result.metric == "val_acc" and result.best_metric == finished["val_acc"].max()
    # The same best as the search's own summary (best.json), with the whole config, typed.
    best = json.loads((result.experiment_dir / "best.json").read_text())
    assert result.best_trial == best["best_trial"] and result.best_config == best["best_config"]
    assert isinstance(result.best_config["lr"], float) and result.best_config["channels"] == 4

    # The search's MLflow run records a command line that runs the same search.
    (parent,) = MlflowClient(store).search_runs(
        [MlflowClient(store).get_experiment_by_name("mnist").experiment_id], "tags.`hpsearch.role` = 'search'"
    )
    command = shlex.split(parent.data.tags["hpsearch.command"])
    assert command[:2] == ["python", "search/run.py"]
    again = parse_args(command[2:])
    assert (again.trials, again.max_epochs, again.gpus, again.name, again.offline) == (3, 1, 0.0, "api", True)
    assert again.data_dir == tmp_path / "data" and again.tracking_uri == store


def test_run_search_refuses_an_unknown_option(tmp_path):
    with pytest.raises(UsageError, match=r"unknown option\(s\) trails; known: .*\btrials\b"):
        hpsearch.run_search(write_tiny_space(tmp_path), trails=3)


def test_run_search_checks_values_before_anything_starts(tmp_path):
    with pytest.raises(UsageError, match="--trials must be at least 1"):
        hpsearch.run_search(write_tiny_space(tmp_path), trials=0, gpus=0, results_dir=tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_run_search_takes_a_builtin_space_name(tmp_path):
    # The name resolves to the packaged space (the error is about the value, after it loaded).
    with pytest.raises(UsageError, match="--trial-budget must be positive"):
        hpsearch.run_search("mnist", trial_budget=-1, gpus=0, results_dir=tmp_path / "results")
    with pytest.raises(UsageError, match=r"no built-in space 'mnistt'"):
        hpsearch.run_search("mnistt", results_dir=tmp_path / "results")


def test_search_result_is_reexported_from_the_package():
    from hpsearch.api import SearchResult, run_search

    assert hpsearch.run_search is run_search and hpsearch.SearchResult is SearchResult
    assert "best_config" in SearchResult.__dataclass_fields__ and run_search.__doc__
