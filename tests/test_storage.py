"""--storage-path: a search's state and checkpoints in storage of its own, and --resume from there.

The real search runs search/run.py's main on the shared Ray (ray_session), interrupted as Ctrl-C
would, then resumed with its local folder gone, as on another machine: all it has is the storage.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from search_helpers import write_tiny_space

from hpsearch.plumbing.errors import UsageError
from hpsearch.search import storage
from hpsearch.search.run import RECORD, main
from hpsearch.search.searcher import STUDY_FILE
from hpsearch.search.trainable import EXAMPLE_FILE, INFO_FILE, MODEL_FILE
from tests.fake_datasets import write_mnist


def test_storage_path_keeps_uris_and_makes_local_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.storage_path("s3://bucket/searches/") == "s3://bucket/searches"
    assert storage.storage_path("gs://bucket") == "gs://bucket"
    assert storage.storage_path("file:///mnt/shared/") == "file:///mnt/shared"
    # A MinIO endpoint is an option of the URI, not a secret.
    minio = "s3://bucket/x?endpoint_override=minio:9000&scheme=http"
    assert storage.storage_path(minio) == minio
    # Every node reads the same path, whatever its working directory: made absolute here.
    assert storage.storage_path("shared/searches") == str(tmp_path / "shared" / "searches")
    assert storage.search_uri("s3://bucket/x?region=eu", Path("results/s1")) == "s3://bucket/x/s1?region=eu"
    assert storage.search_uri(None, Path("results/s1")) == str(tmp_path / "results" / "s1")


@pytest.mark.parametrize(
    "value, message",
    [
        ("ftp://host/x", "use s3://, gs://, file:// or a shared path"),
        ("s3://key:secret@bucket/x", "must not hold credentials"),
        ("s3://bucket/x?access_key=AKIA&secret_key=abc", "must not hold credentials"),
        ("file://relative/x", "a file:// URI takes an absolute path"),
    ],
)
def test_storage_path_refuses_what_no_node_could_use_or_should_record(value, message):
    with pytest.raises(UsageError, match=message):
        storage.storage_path(value)


def test_resume_without_the_storage_says_it_needs_it(tmp_path):
    space = write_tiny_space(tmp_path)
    argv = ["--space", str(space), "--results-dir", str(tmp_path / "results"), "--resume", "--name", "gone"]
    with pytest.raises(UsageError, match="nothing to resume .* needs its --storage-path"):
        main(argv)


def interrupt_when(ready, timeout_s: float = 120.0) -> threading.Thread:
    """Send this process SIGINT (Ctrl-C) once ``ready()`` is true: Tune stops the search, resumable."""

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not ready():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_a_search_in_file_storage_resumes_from_the_storage_alone(ray_session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's artifacts (./mlruns) go here, not to the repository
    write_mnist(tmp_path / "data", n_train=5200, n_test=100)
    shared = tmp_path / "shared"
    uri = f"file://{shared}"
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = [
        "--space",
        str(write_tiny_space(tmp_path)),
        "--gpus",
        "0",
        "--offline",
        "--data-dir",
        str(tmp_path / "data"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--results-dir",
        str(tmp_path / "results"),
        "--tracking-uri",
        store,
        "--name",
        "far",
        "--storage-path",
        uri,
        "--max-failures",
        "1",
        "--keep-models",  # (not a setting of the search: given again on --resume)
        "1",
    ]
    first = [*argv, "--trials", "4", "--max-epochs", "2", "--reports-per-epoch", "1"]
    here, there = tmp_path / "results" / "far", shared / "far"
    # Ctrl-C once a trial has reported (each report is a checkpoint, written to the storage).
    watcher = interrupt_when(lambda: any(there.glob("*/checkpoint_*")))
    assert main(first) == 130
    watcher.join()
    # Tune's state and the trials' folders are in the storage; here, only the driver's files.
    assert (there / "tuner.pkl").is_file() and list(there.glob("run_trial_*"))
    assert not (here / "tuner.pkl").exists() and not list(here.glob("run_trial_*"))
    # ...which the storage holds a copy of.
    for name in (RECORD, STUDY_FILE):
        assert (there / name).read_bytes() == (here / name).read_bytes(), name
    search_id = json.loads((here / RECORD).read_text())["search_id"]

    shutil.rmtree(here)  # resumed on another machine: nothing of the search here
    assert main([*argv, "--resume"]) == 0
    assert json.loads((here / RECORD).read_text())["search_id"] == search_id  # fetched from the storage
    trials = (here / "trials.csv").read_text().splitlines()
    assert len(trials) == 1 + 4 and len({line.split(",")[0] for line in trials[1:]}) == 4
    # The kept model is in the storage; every other checkpoint (models, states) was deleted.
    (kept,) = there.glob("*/checkpoint_*")
    assert sorted(p.name for p in kept.iterdir()) == sorted([MODEL_FILE, INFO_FILE, EXAMPLE_FILE])

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("mnist").experiment_id
    (search,) = client.search_runs([experiment], "tags.`hpsearch.role` = 'search'")  # the same one
    assert search.info.status == "FINISHED"
    # The trial table and the Optuna journal are the search's artifacts: a leaderboard from MLflow alone.
    logged = {f.path for f in client.list_artifacts(search.info.run_id)}
    assert {"trials.csv", STUDY_FILE} <= logged
    journal = client.download_artifacts(search.info.run_id, STUDY_FILE, str(tmp_path / "downloaded"))
    assert Path(journal).read_bytes() == (here / STUDY_FILE).read_bytes()
    # Each trial has one run with each epoch once: an interrupted one went on from its checkpoint.
    runs = client.search_runs([experiment], "tags.`hpsearch.role` = 'trial'")
    assert len(runs) == 4
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert steps == [1, 2] and run.info.status == "FINISHED", (run.info.run_name, steps)
