"""`search/train.py` as a user runs it: a subprocess on fake MNIST files, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch

from hpsearch.search.space import load_space
from hpsearch.trainables.config import resolve_config
from hpsearch.trainables.data.splits import Splits, per_class_subset
from hpsearch.trainables.loop import train
from hpsearch.trainables.models import MODELS, build_model, count_params
from hpsearch.trainables.tasks import TASKS, VAL_SIZE
from tests.fake_datasets import write_mnist

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SUMMARY_KEYS = {"task", "val_acc", "test_acc", "epochs", "train_time_s", "n_params", "stopped"}
# The mnist task holds VAL_SIZE images of train out for validation; 500 more are left to train on.
FAKE_TRAIN = VAL_SIZE["mnist"] + 500


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fake")
    write_mnist(root / "data", n_train=FAKE_TRAIN, n_test=100)
    return root


def cli_command(root: Path, *args: str) -> list[str]:
    common = [
        "--data-dir",
        str(root / "data"),
        "--cache-dir",
        str(root / "cache"),
        "--gpus",
        "0",
        "--offline",
    ]
    return [sys.executable, "search/train.py", *common, *args]  # a later --data-dir wins


# One torch thread: the runs are tiny, and spinning pool threads slow a shared machine down.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(root, *args), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300
    )


def listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


def test_train_cli_prints_a_json_summary_last(fake_root):
    data_before = listing(fake_root / "data")
    # A small model (the 5,000 validation images are evaluated whole) and lr written as `3e-3`.
    # A flat lr: a cosine over a one-epoch horizon decays within the epoch (docs/search-design.md).
    small = ["channels=8", "fc1=128", "fc2=64", "batch_size=64", "lr=3e-3", "schedule=none"]
    args = ["--space", "spaces/mnist.py", *(a for kv in small for a in ("--set", kv)), "--epochs", "1"]
    done = run_cli(fake_root, *args)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert SUMMARY_KEYS <= set(summary)
    assert summary["task"] == "mnist" and summary["epochs"] == 1 and summary["stopped"] == "completed"
    task, config = TASKS["mnist"], summary["config"]
    assert (config["batch_size"], config["lr"], config["epochs"]) == (64, 3e-3, 1)
    knobs = {k: config[k] for k in MODELS[task.model].defaults}
    assert knobs["channels"] == 8 and knobs["fc1"] == 128
    model = build_model(task.model, task.num_classes, task.input_shape, **knobs)
    assert summary["n_params"] == count_params(model)
    # The fake digits are a bright block per class: one epoch is enough to learn them.
    assert summary["val_acc"] > 0.5 and summary["test_acc"] > 0.5
    assert summary["train_time_s"] > 0
    assert "epoch   1/1" in done.stderr  # progress goes to stderr, keeping stdout for the JSON
    # The prepared dataset went to the cache dir; the data dir was only read.
    assert list((fake_root / "cache").glob("mnist-*.pt"))
    assert listing(fake_root / "data") == data_before


def write_space(folder: Path, task: str) -> Path:
    text = (REPO / "spaces" / "mnist.py").read_text().replace('TASK = "mnist"', f"TASK = {task!r}")
    assert f"TASK = {task!r}" in text
    path = folder / f"space_{task}.py"
    path.write_text(text)
    return path


# Each case: the arguments after the common ones, and what its one error line must say.
USAGE_ERRORS = {
    "unknown key": (
        ["--space", "spaces/mnist.py", "--set", "learning_rate=1e-3"],
        "unknown config key 'learning_rate'",
    ),
    "bad value": (["--space", "spaces/mnist.py", "--set", "lr=-3e-3"], "lr must be > 0"),
    "missing space": (["--space", "spaces/no_such_task.py"], "space file spaces/no_such_task.py not found"),
    "unknown task": (["--space", "{unknown_task_space}"], "unknown task 'mnistt'"),
    "missing dataset": (
        ["--space", "spaces/mnist.py", "--data-dir", "{empty}"],
        "MNIST not found under {empty}/MNIST/raw",
    ),
}


@pytest.fixture(scope="module")
def usage_error_runs(fake_root, tmp_path_factory) -> dict[str, tuple[int, str, str]]:
    """(exit code, stdout, stderr) of every USAGE_ERRORS case, run side by side (each imports torch)."""
    folder = tmp_path_factory.mktemp("usage")
    (folder / "empty").mkdir()
    fill = {"unknown_task_space": str(write_space(folder, "mnistt")), "empty": str(folder / "empty")}
    procs = {
        case: subprocess.Popen(
            cli_command(fake_root, *(a.format(**fill) for a in args)),
            cwd=REPO,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for case, (args, _) in USAGE_ERRORS.items()
    }
    runs = {}
    for case, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        runs[case] = (proc.returncode, out, err.replace(fill["empty"], "{empty}"))
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_train_cli_usage_error_is_one_line_exit_2(usage_error_runs, case):
    code, out, err = usage_error_runs[case]
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert USAGE_ERRORS[case][1] in lines[0]
    assert out == ""


@pytest.mark.slow
def test_train_baseline_reaches_high_accuracy_on_real_mnist_in_one_epoch(tmp_path, monkeypatch):
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST files not found under {SHARED_DATA}")
    before = listing(SHARED_DATA)

    def no_network(*args, **kwargs):
        raise AssertionError("the official .gz files are unpacked without the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    task = TASKS["mnist"]
    # download=True unpacks the official archives (md5-checked) into the cache dir's work dir.
    data = task.load(SHARED_DATA, cache_dir=tmp_path / "cache", download=True)
    data = Splits(per_class_subset(data.train, 1000, seed=0), data.val, data.test, data.classes)
    assert len(data.train) == 10_000 and len(data.val) == VAL_SIZE["mnist"]
    # The seed's cosine stepped per epoch ran its first epoch at the full lr, as a flat schedule does
    # here (ours decays within the horizon, so a one-epoch cosine would decay within the epoch).
    baseline = load_space(REPO / "spaces" / "mnist.py").baseline
    config = resolve_config(task, baseline, {"epochs": 1, "schedule": "none"})
    result = train(task, config, data, device=torch.device("cpu"))
    assert result.stopped == "completed"
    # The seed's network and settings on 10,000 real digits, one epoch (50 steps of 200): 0.93 to
    # 0.95 on the 5,000 held out for subset seeds 0-2; chance is 0.1.
    assert result.best_val_acc > 0.9
    assert list((tmp_path / "cache").glob("mnist-*.pt"))
    assert listing(SHARED_DATA) == before  # the shared folder is only read


def test_train_cli_refuses_to_test_a_run_that_diverged_before_its_first_report(fake_root):
    # lr 1e6: the first report's loss is NaN; the kept weights would be the untrained ones.
    args = ["--space", "spaces/mnist.py", "--set", "optimizer=sgd", "--set", "lr=1e6", "--epochs", "1"]
    done = run_cli(fake_root, *args, "--set", "channels=4", "--set", "fc1=16", "--set", "fc2=16")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the run diverged before its first report")
    assert done.stdout == ""  # no summary, so no test accuracy of untrained weights
