"""A search in MLflow: real searches on the shared Ray, read back through MLflow's own API.

The smoke search logs to a real `mlflow server` on loopback (a subprocess, artifacts proxied
over HTTP as on a team server); the others log to the default SQLite store in a tmp directory.
Tags are checked and queried by their literal names: the schema a user queries MLflow by.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import ray.cloudpickle
import torch
import yaml
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hpsearch.search.mlflow_buffer import BufferedMlflow
from hpsearch.search.searcher import MLFLOW_RUN_ATTR, STUDY_FILE, TUNE_TRIAL_ATTR, make_searcher
from hpsearch.search.space import load_space
from hpsearch.search.summary import trials_frame
from hpsearch.search.tracking import METRICS, MlflowTracker, code_version
from hpsearch.search.tuner import SearchSettings, build_tuner
from hpsearch.trainables.data.splits import Split, Splits

# Ray workers cannot import this test module: send its trial functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SPACE = """
TASK = "mnist"
METRIC = "val_acc"
MODE = "max"
BUDGET_S = 60
MAX_EPOCHS = 3
# Tiny, so a trial trains in a second; epochs 5 is above max_epochs: trials are capped at 3.
BASELINE = {"lr": 3e-3, "batch_size": 32, "epochs": 5, "channels": 4, "fc1": 32, "fc2": 16}


def space(trial):
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [16, 32, 64])
"""


# Stores and servers


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, made once: creating its tables takes ~8 s, copying it none."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    cwd = os.getcwd()
    os.chdir(path.parent)  # MLflow records ./mlruns as the default experiment's artifact folder
    try:
        MlflowClient(f"sqlite:///{path}").search_experiments()
    finally:
        os.chdir(cwd)
    return path


@pytest.fixture(scope="module", autouse=True)
def server_process(empty_store, tmp_path_factory):
    """`mlflow server` on a free loopback port, started with the module: it takes ~20 s to boot,
    which the searches on the SQLite store overlap. Yields (process, URL, log file)."""
    root = tmp_path_factory.mktemp("server")
    shutil.copy(empty_store, root / "mlflow.db")
    port = _free_port()
    command = [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"),
        *("--artifacts-destination", str(root / "artifacts")),  # proxied: clients upload over HTTP
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
    ]
    # The job runner (7 huey consumers) doubles the start-up time and is not needed here.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log_path = root / "server.log"
    with open(log_path, "w") as log:
        # Its own process group: `mlflow server` runs uvicorn as a child, which a plain kill leaves.
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield server, f"http://127.0.0.1:{port}", log_path
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="module")
def mlflow_server(server_process) -> str:
    """The server's URL, once it answers."""
    server, url, log_path = server_process
    deadline = time.monotonic() + 120
    while not _answers(url):
        if server.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"mlflow server did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.25)
    return url


@pytest.fixture
def default_store(empty_store, tmp_path, monkeypatch) -> MlflowClient:
    """MLflow's default store, `sqlite:///mlflow.db` in the working directory (here tmp_path)."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


# Searches


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    path = tmp_path_factory.mktemp("spaces") / "tiny_mnist.py"
    path.write_text(SPACE)
    return load_space(path)


@pytest.fixture(scope="module")
def data() -> Splits:
    """300 MNIST-sized images: class k is a bright 7x7 block at one of ten places, plus noise."""
    gen = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        y = torch.arange(n) % 10
        x = torch.randint(0, 60, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
        for i, k in enumerate(y.tolist()):
            row, col = divmod(k, 4)
            x[i, 0, 7 * row : 7 * row + 7, 7 * col : 7 * col + 7] = 255
        return Split(x, y)

    return Splits(split(200), split(100), split(10), [str(k) for k in range(10)])


def tracker_for(space, settings, experiment_dir, tracking_uri=None, search_id=None) -> MlflowTracker:
    return MlflowTracker(
        space,
        settings,
        experiment_dir,
        tracking_uri=tracking_uri,
        experiment=None,
        command="pytest tests/test_tracking.py",
        quick=True,
        search_id=search_id,
    )


def quick_trial(params, *, data, task_name, baseline, settings):
    """Stands in for search/trainable.run_trial: reports as it does, trains nothing.
    The baseline's trial dies after its first epoch."""
    from ray import tune

    for epoch in range(1, settings.max_epochs + 1):
        time.sleep(0.2)  # long enough for the trials to overlap
        last = epoch == settings.max_epochs
        values = {k: epoch / 10 for k in METRICS if k != "time_total_s"}  # Ray sets time_total_s
        tune.report({"epoch": epoch, **values, "stopped": "completed" if last else ""})
        if all(baseline[k] == v for k, v in params.items()):
            raise RuntimeError("out of memory, or so it says\nsecond line of the error")


def trial_runs(client: MlflowClient, search: str) -> list[Run]:
    experiment = client.get_experiment_by_name("mnist")
    query = f"tags.`hpsearch.role` = 'trial' AND tags.`hpsearch.search` = '{search}'"
    return client.search_runs([experiment.experiment_id], query, max_results=1000)


def search_runs(client: MlflowClient, search: str) -> list[Run]:
    experiment = client.get_experiment_by_name("mnist")
    query = f"tags.`hpsearch.role` = 'search' AND tags.`hpsearch.search` = '{search}'"
    return client.search_runs([experiment.experiment_id], query)


# On the default SQLite store first: the server boots in the meantime for the smoke search.


@pytest.fixture(scope="module")
def eight(ray_session, empty_store, space, data, tmp_path_factory):
    """8 trials at once (a quarter CPU each) on MLflow's default store; the baseline's dies."""
    root = tmp_path_factory.mktemp("eight")
    shutil.copy(empty_store, root / "mlflow.db")
    settings = SearchSettings(trials=8, trial_budget_s=60, max_epochs=4, cpus_per_trial=0.25, grace_period=4)
    experiment_dir = root / "results" / "eight"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the default store is sqlite:///mlflow.db in the working directory
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        tracker = tracker_for(space, settings, experiment_dir)
        results = build_tuner(space, settings, data, experiment_dir, [tracker], quick_trial).fit()
    frame = trials_frame(results, space, settings).set_index("trial_id")
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    study = optuna.load_study(
        study_name="eight", storage=JournalStorage(JournalFileBackend(str(experiment_dir / STUDY_FILE)))
    )
    return SimpleNamespace(client=client, results=results, frame=frame, study=study)


@pytest.mark.slow
def test_tracker_loses_nothing_with_8_concurrent_trials(eight):
    runs = {r.info.run_name: r for r in trial_runs(eight.client, "eight")}
    assert len(runs) == len(eight.results) == 8
    for result in eight.results:
        run, history = runs[result.metrics["trial_id"]], result.metrics_dataframe
        # grace_period=max_epochs: ASHA stops none, so all but the dying trial report 4 epochs.
        assert len(history) == (1 if run.data.tags["hpsearch.baseline"] == "true" else 4)
        for key in METRICS:  # every point Tune recorded, at step=epoch
            points = sorted((m.step, m.value) for m in eight.client.get_metric_history(run.info.run_id, key))
            # pytest 9 refuses nested approx: steps exactly, values approximately.
            assert [step for step, _ in points] == list(history["epoch"]), key
            assert [value for _, value in points] == pytest.approx(list(history[key])), key
        assert run.data.tags["hpsearch.fate"] == eight.frame.loc[run.info.run_name, "fate"]
    # The trials did run side by side (all 8 at once, as a rule; 4 at the very least).
    spans = [(r.info.start_time, r.info.end_time) for r in runs.values()]
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    assert max(itertools.accumulate(change for _, change in events)) >= 4


def test_trial_that_dies_leaves_its_run_marked_failed(eight):
    assert eight.results.num_errors == 1 and eight.results.num_terminated == 7  # the search went on
    by_baseline = {True: [], False: []}
    for run in trial_runs(eight.client, "eight"):
        by_baseline[run.data.tags["hpsearch.baseline"] == "true"].append(run)
    (failed,), others = by_baseline[True], by_baseline[False]
    assert failed.info.status == "FAILED" and failed.data.tags["hpsearch.fate"] == "failed"
    # The error's own first line, not Ray's wrapper ("ray::ImplicitFunc.train() (pid=...").
    assert failed.data.tags["hpsearch.error"] == "RuntimeError: out of memory, or so it says"
    assert [m.step for m in eight.client.get_metric_history(failed.info.run_id, "val_acc")] == [1]
    for run in others:
        assert run.info.status == "FINISHED" and run.data.tags["hpsearch.fate"] == "completed"
        assert "hpsearch.error" not in run.data.tags


def test_each_optuna_trial_names_its_mlflow_run(eight):
    # What a user of optuna-dashboard on the search's journal sees: each trial's Tune trial and run.
    runs = {r.data.tags["hpsearch.trial_id"]: r.info.run_id for r in trial_runs(eight.client, "eight")}
    attrs = [t.user_attrs for t in eight.study.get_trials(deepcopy=False)]
    assert len(attrs) == 8 and {a[TUNE_TRIAL_ATTR] for a in attrs} == set(runs)
    assert {a[TUNE_TRIAL_ATTR]: a[MLFLOW_RUN_ATTR] for a in attrs} == runs


def test_a_trials_run_is_noted_in_its_optuna_trial(space, default_store, tmp_path):
    # No Ray: the searcher asks Optuna for a trial as Tune would, then the tracker starts its run.
    experiment_dir = tmp_path / "results" / "noted"
    experiment_dir.mkdir(parents=True)
    settings = SearchSettings(trials=2, max_epochs=1)
    searcher = make_searcher(space, seed=0, results_dir=experiment_dir, n_startup_trials=1)
    searcher.suggest("noted_00000")
    tracker = tracker_for(space, settings, experiment_dir)
    tracker.setup()
    tracker.on_trial_start(0, [], SimpleNamespace(trial_id="noted_00000", config={}, last_result={}))
    tracker.on_trial_start(0, [], SimpleNamespace(trial_id="unasked_00001", config={}, last_result={}))
    journal = JournalStorage(JournalFileBackend(str(experiment_dir / STUDY_FILE)))
    (trial,) = optuna.load_study(study_name="noted", storage=journal).get_trials()
    (run,) = [r for r in trial_runs(default_store, "noted") if r.info.run_name == "noted_00000"]
    assert trial.user_attrs == {TUNE_TRIAL_ATTR: "noted_00000", MLFLOW_RUN_ATTR: run.info.run_id}


def test_resumed_search_replaces_a_restarted_trials_run(space, default_store, tmp_path):
    settings = SearchSettings(trials=2, max_epochs=3)
    tracker = tracker_for(space, settings, tmp_path / "results" / "resumed")
    trial = SimpleNamespace(trial_id="abc_00001", config={"lr": 1e-3}, last_result={})
    tracker.setup()
    tracker.on_trial_start(0, [], trial)
    for epoch in (1, 2):
        tracker.on_trial_result(0, [], trial, {"epoch": epoch, "val_acc": epoch / 10})
    tracker.on_experiment_end([trial])  # Ctrl-C: the trial's run is left KILLED, its fate running
    tracker.finish({}, [])
    (parent,) = search_runs(default_store, "resumed")
    assert parent.info.status == "KILLED"  # a trial never ended: the search was interrupted

    # --resume: Tune unpickles the tracker it pickled with the tuner, with no client or run ids.
    assert not [v for v in tracker.__getstate__().values() if isinstance(v, (BufferedMlflow, MlflowClient))]
    again = pickle.loads(pickle.dumps(tracker))
    assert again._runs == {} and again._parent_id is None
    again.setup()
    (cut_short,) = trial_runs(default_store, "resumed")
    again.on_trial_start(0, [], trial)  # the trial trains again from epoch 1
    for epoch in (1, 2, 3):  # (other values than the first attempt's: a GPU is not bit-exact)
        again.on_trial_result(0, [], trial, {"epoch": epoch, "val_acc": epoch / 100})
    trial.last_result = {"training_iteration": 3, "epoch": 3, "stopped": "completed"}
    again.on_trial_complete(0, [], trial)
    again.finish({"val_acc": 0.3}, [])

    (parent,) = search_runs(default_store, "resumed")
    assert parent.info.run_id == tracker._parent_id and parent.info.status == "FINISHED"
    assert parent.data.metrics == {"best_val_acc": 0.3}
    (run,) = trial_runs(default_store, "resumed")  # one run per trial
    assert run.info.status == "FINISHED" and run.data.tags["hpsearch.fate"] == "completed"
    history = default_store.get_metric_history(run.info.run_id, "val_acc")
    # The second attempt's history alone, not the first's epochs 1-2 mixed in.
    assert sorted((m.step, m.value) for m in history) == [(1, 0.01), (2, 0.02), (3, 0.03)]
    assert run.data.tags["hpsearch.restarted_from"] == cut_short.info.run_id
    assert default_store.get_run(cut_short.info.run_id).info.lifecycle_stage == "deleted"


def test_a_resumed_search_ends_the_run_of_a_trial_tune_never_recorded(space, default_store, tmp_path):
    # The driver is killed outright after trial "lost" started and before Tune's checkpoint saw
    # it: --resume does not know that trial, so its run must be ended by the resumed search.
    settings = SearchSettings(trials=2, max_epochs=1)
    tracker = tracker_for(space, settings, tmp_path / "results" / "lost")
    kept, lost = (SimpleNamespace(trial_id=t, config={"lr": 1e-3}, last_result={}) for t in ("kept", "lost"))
    tracker.setup()
    for trial in (kept, lost):
        tracker.on_trial_start(0, [], trial)
    again = pickle.loads(pickle.dumps(tracker))  # (the kill: no callback of the first one ran)
    again.setup()
    again.on_trial_start(0, [], kept)
    kept.last_result = {"training_iteration": 1, "epoch": 1, "val_acc": 0.5, "stopped": "completed"}
    again.on_trial_result(0, [], kept, kept.last_result)
    again.on_trial_complete(0, [], kept)
    again.on_experiment_end([kept])
    again.finish({"val_acc": 0.5}, [])
    runs = {r.data.tags["hpsearch.trial_id"]: r for r in trial_runs(default_store, "lost")}
    assert runs["kept"].info.status == "FINISHED" and runs["kept"].data.tags["hpsearch.fate"] == "completed"
    assert runs["lost"].info.status == "KILLED" and runs["lost"].data.tags["hpsearch.fate"] == "stopped"
    assert "driver died" in runs["lost"].data.tags["hpsearch.error"]
    (parent,) = search_runs(default_store, "lost")
    assert parent.info.status == "FINISHED"  # nothing left unended


def test_a_new_search_where_a_deleted_one_ran_under_its_name_gets_its_own_run(space, default_store, tmp_path):
    # Same --name, same folder (so the same study path), the first one's folder deleted between:
    # two searches, two parent runs. The same search resumed (its id kept) reopens its own.
    folder, settings = tmp_path / "results" / "again", SearchSettings(trials=1, max_epochs=1)
    parents = []
    for search_id in ("first", "second", "second"):
        tracker = tracker_for(space, settings, folder, search_id=search_id)
        tracker.setup()
        parents.append(tracker._parent_id)
        tracker.finish({}, [])
    assert parents[0] != parents[1] == parents[2]
    runs = {r.info.run_id: r.data.tags["hpsearch.search_id"] for r in search_runs(default_store, "again")}
    assert runs == {parents[0]: "first", parents[1]: "second"}


def test_tracker_goes_on_without_a_server(space, tmp_path, caplog):
    dead = f"http://127.0.0.1:{_free_port()}"
    tracker = tracker_for(space, SearchSettings(), tmp_path / "results" / "nowhere", tracking_uri=dead)
    trial = SimpleNamespace(trial_id="abc_00000", config={}, last_result={})
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="hpsearch.search.tracking"):
        tracker.setup()
        tracker.on_trial_start(0, [], trial)
        tracker.on_trial_result(0, [], trial, {"epoch": 1, "val_acc": 0.5})
        tracker.on_trial_complete(0, [], trial)
        tracker.finish({"val_acc": 0.5}, [])
    assert time.monotonic() - started < 10  # not MLflow's minutes of retries per call
    assert [r.message for r in caplog.records] == [
        f"MLflow: no MLflow server answers at {dead}; the search goes on without tracking"
    ]


def test_code_version_is_the_commit_or_unknown(tmp_path):
    sha = code_version()
    assert len(sha.removesuffix("-dirty")) == 40 and int(sha[:40], 16) >= 0
    assert code_version(tmp_path) == "unknown"  # not a git repository


# The smoke search, tracked on a real MLflow server


@pytest.fixture(scope="module")
def smoke(ray_session, mlflow_server, space, data, tmp_path_factory):
    """4 real trials of the tiny CNN, 2 at a time, ended as search/run.py ends a search."""
    settings = SearchSettings(trials=4, trial_budget_s=60, max_epochs=3, cpus_per_trial=1)
    experiment_dir = tmp_path_factory.mktemp("results") / "smoke"
    tracker = tracker_for(space, settings, experiment_dir, tracking_uri=mlflow_server)
    results = build_tuner(space, settings, data, experiment_dir, callbacks=[tracker]).fit()

    frame = trials_frame(results, space, settings)
    frame.to_csv(experiment_dir / "trials.csv", index=False)
    best = {"task": "mnist", "search": "smoke", "val_acc": float(frame["val_acc"].max())}
    (experiment_dir / "best.json").write_text(json.dumps(best))
    report = experiment_dir / "report"
    report.mkdir()
    (report / "leaderboard.md").write_text("# Leaderboard\n")
    tracker.finish(best, [experiment_dir / "best.json", experiment_dir / "trials.csv", report])
    return SimpleNamespace(
        client=MlflowClient(tracking_uri=mlflow_server),
        results=results,
        frame=frame.set_index("trial_id"),
        best=best,
    )


def test_search_has_one_parent_run_as_the_schema_says(smoke, space):
    (parent,) = search_runs(smoke.client, "smoke")
    assert parent.info.run_name == "smoke" and parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["hpsearch.task"] == "mnist" and tags["hpsearch.metric"] == "val_acc"
    assert tags["hpsearch.mode"] == "max" and tags["hpsearch.code_version"] == code_version()
    assert tags["hpsearch.command"] == "pytest tests/test_tracking.py"
    assert (
        tags["hpsearch.study"].endswith("smoke/optuna_study.journal")
        and Path(tags["hpsearch.study"]).exists()
    )
    params = parent.data.params
    assert params["trials"] == "4" and params["max_epochs"] == "3" and params["cpus_per_trial"] == "1"
    assert params["time_budget_s"] == "None" and params["quick"] == "True"
    assert params["space"] == str(space.path)
    assert parent.data.metrics == {"best_val_acc": smoke.best["val_acc"]}
    artifacts = {a.path for a in smoke.client.list_artifacts(parent.info.run_id)}
    assert artifacts == {"tiny_mnist.py", "best.json", "trials.csv", "report"}
    assert [a.path for a in smoke.client.list_artifacts(parent.info.run_id, "report")] == [
        "report/leaderboard.md"
    ]


def test_search_has_a_nested_run_per_trial(smoke):
    (parent,) = search_runs(smoke.client, "smoke")
    runs = trial_runs(smoke.client, "smoke")
    assert sorted(r.info.run_name for r in runs) == sorted(smoke.frame.index) and len(runs) == 4
    for run in runs:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["hpsearch.trial_id"] == run.info.run_name and tags["hpsearch.task"] == "mnist"
        assert tags["hpsearch.device"] == "cpu" and tags["hpsearch.code_version"] == code_version()
        assert tags["hpsearch.precision"] == "fp32"  # what the trial's own reports said it trained in
        assert tags["hpsearch.compiled"] == "false"  # the CPU never compiles
    # Exactly one trial is the seed's baseline, and it is the one trials.csv says.
    baseline = [r.info.run_name for r in runs if r.data.tags["hpsearch.baseline"] == "true"]
    assert baseline == list(smoke.frame.index[smoke.frame["baseline"]])


def test_trial_runs_hold_the_full_config_epochs_and_fate(smoke, tmp_path):
    for result in smoke.results:
        trial_id = result.metrics["trial_id"]
        (run,) = [r for r in trial_runs(smoke.client, "smoke") if r.info.run_name == trial_id]
        row = smoke.frame.loc[trial_id]
        config = {k.removeprefix("config/"): v for k, v in row.items() if k.startswith("config/")}
        assert run.data.params == {k: str(_plain(v)) for k, v in config.items()}  # every resolved value
        assert int(run.data.params["epochs"]) == 3  # capped at max_epochs, as the trainable does
        saved = Path(smoke.client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path)))
        assert yaml.safe_load(saved.read_text()) == {k: _plain(v) for k, v in config.items()}
        # Every epoch Tune saw is in MLflow, with step=epoch (a CUDA-only metric: on no step here).
        seen = result.metrics_dataframe
        for key in METRICS:
            history = smoke.client.get_metric_history(run.info.run_id, key)
            epochs = seen["epoch"][seen[key].notna()].tolist() if key in seen else []
            assert sorted(m.step for m in history) == epochs, key
        assert "gpu_peak_mem_gb" not in seen  # trained on the CPU
        assert seen["mem_estimate_gb"].gt(0).all()  # estimated before the trial, on every report
        assert run.data.tags["hpsearch.fate"] == row["fate"]
        assert run.info.status == "FINISHED"


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _serve(db: Path, port: int, log_path: Path) -> subprocess.Popen:
    """`mlflow server` on ``db`` at ``port``, once it answers."""
    command = [
        *(sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "a") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while not _answers(f"http://127.0.0.1:{port}"):
        if server.poll() is not None or time.monotonic() > deadline:
            _kill(server)
            pytest.fail(f"mlflow server did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.25)
    return server


def _kill(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGKILL)  # as a crash would: no goodbye
    server.wait(timeout=30)


def _trial(trial_id: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={"lr": 1e-3}, last_result={})


@pytest.mark.slow
def test_a_server_killed_and_restarted_mid_search_loses_nothing(
    space, empty_store, tmp_path, caplog, monkeypatch
):
    monkeypatch.setattr("hpsearch.search.mlflow_buffer.PROBE_EVERY_S", 0.0)  # ask at every call if it is back
    db, port, log_path = tmp_path / "mlflow.db", _free_port(), tmp_path / "server.log"
    shutil.copy(empty_store, db)
    url = f"http://127.0.0.1:{port}"
    server = _serve(db, port, log_path)
    tracker = tracker_for(
        space, SearchSettings(max_epochs=3), tmp_path / "results" / "restart", tracking_uri=url
    )
    a, b = _trial("a_00000"), _trial("b_00001")
    try:
        with caplog.at_level(logging.WARNING, logger="hpsearch.search.tracking"):
            tracker.setup()
            tracker.on_trial_start(0, [], a)
            tracker.on_trial_result(0, [], a, {"epoch": 1, "val_acc": 0.1})
            _kill(server)
            # While it is down: a trial starts, both report.
            tracker.on_trial_start(0, [], b)
            tracker.on_trial_result(0, [], a, {"epoch": 2, "val_acc": 0.2})
            tracker.on_trial_result(0, [], b, {"epoch": 1, "val_acc": 0.5})
            server = _serve(db, port, log_path)
            tracker.on_trial_result(0, [], a, {"epoch": 3, "val_acc": 0.3})  # back: the missed calls first
            for trial, value in ((a, 0.3), (b, 0.5)):
                trial.last_result = {
                    "training_iteration": 3,
                    "epoch": 3,
                    "val_acc": value,
                    "stopped": "completed",
                }
                tracker.on_trial_complete(0, [], trial)
            tracker.on_experiment_end([a, b])
            tracker.finish({"val_acc": 0.5, "best_trial": "b_00001"}, [])
        client = MlflowClient(url)
        runs = {r.info.run_name: r for r in trial_runs(client, "restart")}
        assert sorted(runs) == ["a_00000", "b_00001"]
        assert [m.step for m in client.get_metric_history(runs["a_00000"].info.run_id, "val_acc")] == [
            1,
            2,
            3,
        ]
        assert [m.value for m in client.get_metric_history(runs["b_00001"].info.run_id, "val_acc")] == [0.5]
        assert {r.info.status for r in runs.values()} == {"FINISHED"}
        (parent,) = search_runs(client, "restart")
        assert parent.info.status == "FINISHED" and parent.data.tags["hpsearch.best_trial"] == "b_00001"
        # (not urllib3's)
        messages = [r.message for r in caplog.records if r.name == "hpsearch.search.tracking"]
        assert f"MLflow: the server at {url} stopped answering" in messages[0]
        assert any("answers again" in m and "logged the 3 calls it missed" in m for m in messages)
        assert not any("not logged" in m for m in messages)
    finally:
        if server.poll() is None:
            _kill(server)


@pytest.mark.slow
def test_a_server_that_never_comes_back_is_named_with_what_was_not_logged(
    space, empty_store, tmp_path, caplog
):
    db, port, log_path = tmp_path / "mlflow.db", _free_port(), tmp_path / "server.log"
    shutil.copy(empty_store, db)
    server = _serve(db, port, log_path)
    tracker = tracker_for(
        space,
        SearchSettings(max_epochs=3),
        tmp_path / "results" / "gone",
        tracking_uri=f"http://127.0.0.1:{port}",
    )
    a = _trial("a_00000")
    with caplog.at_level(logging.WARNING, logger="hpsearch.search.tracking"):
        tracker.setup()
        tracker.on_trial_start(0, [], a)
        _kill(server)
        started = time.monotonic()
        tracker.on_trial_result(0, [], a, {"epoch": 1, "val_acc": 0.1})
        tracker.on_trial_result(0, [], a, {"epoch": 2, "val_acc": 0.2})
        a.last_result = {"training_iteration": 2, "epoch": 2, "val_acc": 0.2, "stopped": "completed"}
        tracker.on_trial_complete(0, [], a)
        tracker.finish({"val_acc": 0.2}, [])
        assert time.monotonic() - started < 30  # not MLflow's minutes of retries per call
    last = [r.message for r in caplog.records if r.name == "hpsearch.search.tracking"][-1]
    assert "did not answer again: 5 calls not logged" in last
    assert (
        "(logging trial a_00000 epoch 1; logging trial a_00000 epoch 2; ending trial a_00000's run; "
        "keeping the best trials' models; finishing the search's run)"
    ) in last
    assert str(tmp_path / "results" / "gone") in last


def test_a_trial_whose_run_failed_to_start_once_still_gets_its_epochs_and_fate(
    space, default_store, tmp_path
):
    tracker = tracker_for(space, SearchSettings(max_epochs=2), tmp_path / "results" / "late")
    real_start = tracker._start_trial
    failures = []

    def start_fails_once(trial):
        if not failures:
            failures.append(trial.trial_id)
            raise RuntimeError("database is locked")  # as SQLite says under a burst of writers
        real_start(trial)

    tracker._start_trial = start_fails_once
    trial = _trial("late_00000")
    tracker.setup()
    tracker.on_trial_start(0, [], trial)  # fails: one warning, no run yet
    for epoch in (1, 2):
        tracker.on_trial_result(0, [], trial, {"epoch": epoch, "val_acc": epoch / 10})
    trial.last_result = {"training_iteration": 2, "epoch": 2, "val_acc": 0.2, "stopped": "completed"}
    tracker.on_trial_complete(0, [], trial)
    assert failures == ["late_00000"]
    (run,) = trial_runs(default_store, "late")
    assert run.info.status == "FINISHED" and run.data.tags["hpsearch.fate"] == "completed"
    history = default_store.get_metric_history(run.info.run_id, "val_acc")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2)]
