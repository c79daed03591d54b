"""The CUDA path, on a real GPU: every model family trains, in the precision the GPU can do best,
with no host sync per batch, and a trial that does not fit fails with one clear line.

Every test here carries the `cuda` mark and skips without a GPU; `bash benchmarks/gpu_check.sh`
runs them (`pytest -m cuda`) on a GPU machine.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from search_helpers import random_splits, tiny_data, write_tiny_space

from hpsearch.search import trainable
from hpsearch.search.settings import SearchSettings
from hpsearch.search.space import load_space
from hpsearch.trainables.config import resolve_config
from hpsearch.trainables.loop import build_task_model, train
from hpsearch.trainables.memory import estimate_memory
from hpsearch.trainables.precision import BF16, FP16, choose_precision
from hpsearch.trainables.tasks import TASKS
from tests.fake_datasets import write_mnist

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CUDA = torch.device("cuda")
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("task_name", list(TASKS))
def test_every_model_family_trains_on_the_gpu(task_name):
    task = TASKS[task_name]
    config = resolve_config(task, {"epochs": 2, "batch_size": 32})
    result = train(task, config, random_splits(task, 256, 64).to(CUDA), device=CUDA)
    assert result.precision == choose_precision(CUDA).name
    assert len(result.history) == 2 and all(math.isfinite(r["train_loss"]) for r in result.history)
    assert all(r["gpu_peak_mem_gb"] > 0 for r in result.history)
    assert next(result.model.parameters()).device.type == "cuda"


@pytest.mark.parametrize("task_name", list(TASKS))
def test_the_memory_estimate_is_near_what_a_trial_really_holds(task_name):
    # The estimate decides whether a trial starts: far under, trials die of OOM after all; far
    # over, trials that fit are refused. Within a factor of 2 under, 20 over (cuDNN's
    # workspaces, the allocator's rounding and autocast's copies are not counted exactly).
    task = TASKS[task_name]
    config = resolve_config(task, {"epochs": 1, "batch_size": 64})
    data = random_splits(task, 512, 64)
    need = estimate_memory(build_task_model(task, config), config, data)
    torch.cuda.empty_cache()
    train(task, config, data.to(CUDA), device=CUDA)
    peak = torch.cuda.max_memory_allocated(CUDA)
    assert peak / 2 <= need.total <= 20 * peak, (need.describe(), peak)


@pytest.mark.parametrize("task_name", ["mnist", "cifar100", "emnist"])  # a CNN, batch norm, the LSTM
def test_a_compiled_run_trains_and_hands_back_the_plain_model(task_name):
    task = TASKS[task_name]
    config = resolve_config(task, {"epochs": 2, "batch_size": 64})
    result = train(task, config, random_splits(task, 512, 128).to(CUDA), device=CUDA, compile_mode="on")
    assert result.compiled and result.compile_s > 0, "compilation failed and fell back to eager"
    assert all(math.isfinite(r["train_loss"]) and r["compiled"] for r in result.history)
    assert not any(name.startswith("_orig_mod") for name in result.model.state_dict())


def test_the_lstm_runs_in_cudnn_under_autocast():
    # Autocast casts the LSTM to the low precision, where cuDNN's fused RNN kernels must still
    # be the ones chosen (not the slow per-step fallback).
    task = TASKS["emnist"]
    config = resolve_config(task, {})
    model = build_task_model(task, config).to(CUDA)
    x = torch.rand(64, *task.input_shape, device=CUDA)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with choose_precision(CUDA).autocast():
            model(x).float().sum().backward()
    ops = {event.key for event in prof.key_averages()}
    assert "aten::_cudnn_rnn" in ops, sorted(op for op in ops if "rnn" in op or "lstm" in op)


def test_the_gpu_gets_its_best_precision():
    native = torch.cuda.get_device_capability() >= (8, 0)
    assert choose_precision(CUDA).name == (BF16 if native else FP16)
    assert not native or torch.cuda.is_bf16_supported()  # where we choose bf16, torch agrees


@pytest.mark.parametrize("task_name", ["mnist", "font", "emnist"])
def test_the_batch_loop_does_not_sync_per_batch(task_name):
    # Every report syncs once (its loss, accuracy and validation), so the syncs of a run are
    # counted for 4 and for 16 batches an epoch: the same count means none is per batch.
    if choose_precision(CUDA).name == FP16:
        pytest.skip("fp16's GradScaler checks each step for inf/NaN, a sync per batch by design")
    task = TASKS[task_name]
    config = resolve_config(task, {"epochs": 1, "batch_size": 16, "augment": "none"})

    def syncs(n_train: int) -> int:
        data = random_splits(task, n_train, 64).to(CUDA)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train(task, config, data, device=CUDA)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchronizing" in str(w.message) for w in caught)

    syncs(64)  # warm-up: cuDNN and the caching allocator settle
    assert syncs(64) == syncs(256)


def test_a_trial_that_does_not_fit_fails_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(trainable.ray, "get_gpu_ids", lambda: [0])  # as inside a Ray GPU worker
    monkeypatch.setattr(trainable.tune, "report", lambda *a, **k: None)
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(max_epochs=1, gpus_per_trial=1)
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(1e-4)  # a few MiB of the GPU for this process
    try:
        with pytest.raises(trainable.TrialOutOfMemory, match=r"^out of memory on .+: its data copy is"):
            trainable.run_trial(
                {"batch_size": 256},
                data=tiny_data(),
                task_name="mnist",
                baseline=space.baseline,
                settings=settings,
            )
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()


def test_a_trial_reports_the_gpu_it_ran_on(monkeypatch, tmp_path):
    reports = []
    monkeypatch.setattr(trainable.ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setattr(trainable.tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(max_epochs=1, gpus_per_trial=1, trial_budget_s=60)
    trainable.run_trial({}, data=tiny_data(), task_name="mnist", baseline=space.baseline, settings=settings)
    assert reports and {r["device"] for r in reports} == {torch.cuda.get_device_name(0)}
    assert {r["precision"] for r in reports} == {choose_precision(CUDA).name}
    # Sampled by MLflow's GPU monitor through NVML: how busy the GPU was, and its memory in use.
    assert all(0 <= r["gpu_util_pct"] <= 100 and r["gpu_mem_used_gb"] > 0 for r in reports)


def test_two_trials_packed_on_one_gpu_both_train_there(tmp_path):
    # The search as a user runs it, in its own process (its own Ray, with this machine's one GPU):
    # half a GPU per trial, so the two trials share it, and both really ran on it.
    write_mnist(tmp_path / "data", n_train=5200, n_test=100)
    done = subprocess.run(
        [
            sys.executable, "search/run.py", "--space", str(write_tiny_space(tmp_path)),
            "--gpus", "1", "--gpus-per-trial", "0.5", "--trials", "2", "--max-epochs", "2",
            "--trial-budget", "60", "--data-dir", str(tmp_path / "data"),
            "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(tmp_path / "results"),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--name", "packed", "--offline",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist")
    runs = client.search_runs([experiment.experiment_id], "tags.`hpsearch.role` = 'trial'")
    assert len(runs) == 2
    assert {r.data.tags["hpsearch.device"] for r in runs} == {torch.cuda.get_device_name(0)}
    assert {r.data.tags["hpsearch.fate"] for r in runs} <= {"completed", "budget"}
    # Packed, not one after the other: their runs overlap in time.
    (a, b) = sorted(runs, key=lambda r: r.info.start_time)
    assert b.info.start_time < a.info.end_time
