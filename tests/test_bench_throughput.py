"""The throughput benchmark: its smoke run writes the full report, and its seeds' way is a fair one."""

from __future__ import annotations

import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from hpsearch.benchmarks.epoch_time import synthetic
from hpsearch.benchmarks.throughput import (
    SeedDataset,
    forward_flops_per_image,
    main,
    model_knobs,
    peak_flops,
    seed_epoch,
    seed_loader,
    seed_transform,
)
from hpsearch.trainables.config import resolve_config
from hpsearch.trainables.models import build_model
from hpsearch.trainables.optim import build_optimizer
from hpsearch.trainables.tasks import TASKS, normalise

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_throughput_smoke_writes_report(tmp_path):
    out = tmp_path / "throughput.md"
    args = ["--smoke", "--threads", "1", "--out", str(out)]
    # A real process, as a user starts it: the command line in the report must be the one that ran.
    run = subprocess.run(
        [sys.executable, "benchmarks/throughput.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    assert f"- Command: `{shlex.join(['python', 'benchmarks/throughput.py', *args])}`" in text
    machine = next(line for line in text.splitlines() if line.startswith("- Machine: "))
    assert "cores" in machine and "torch" in machine
    header, *rows = [line for line in text.splitlines() if line.startswith("| ")]  # not |---|
    columns = [c.strip() for c in header.strip("|").split("|")]
    table = {cells[0]: dict(zip(columns, cells, strict=True)) for cells in (_cells(r) for r in rows)}
    assert len(rows) == 2 and sorted(table) == ["cifar10", "mnist"]  # one row per smoke task
    for row in table.values():
        for column in columns[2:11]:  # params .. DataLoader TFLOP/s
            assert float(row[column].replace(",", "").rstrip("x")) > 0, (column, row)
        # The ratio column is the ratio of the two measured columns (rounded in the table).
        ours, seeds = (float(row[c].replace(",", "")) for c in ("ours img/s", "DataLoader img/s"))
        assert float(row["ratio (ours/DataLoader)"].rstrip("x")) == pytest.approx(ours / seeds, rel=0.05)
        if not torch.cuda.is_available():
            assert row["ours % of peak"] == row["DataLoader % of peak"] == "n/a"
    assert "| mnist |" in run.stderr  # the table is printed as it goes


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_throughput_unknown_task_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--tasks", "mnist,nope", "--out", str(tmp_path / "t.md")])
    assert exit_info.value.code == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "t.md").exists()


@pytest.mark.parametrize("name", ["mnist", "cifar10", "font"])
def test_seed_dataset_gives_our_loops_inputs(name):
    # Both ways must train on the same inputs: PIL + ToTensor + Normalize per sample equals our
    # batched normalisation, grey and colour alike (a channel-order slip would show here).
    task = TASKS[name]
    split = synthetic(task, 3, CPU).train
    dataset = SeedDataset(split, seed_transform(task, "none"))
    x, y = dataset[1]
    expected = normalise(split.x[1:2].float().div(255), task)[0]
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-5)
    assert y == split.y[1].item()


def test_seed_transform_covers_every_augmentation():
    # Every augmentation a task allows has a per-sample twin, so any baseline can be benchmarked.
    for task in TASKS.values():
        c, h, w = task.input_shape
        image = Image.new("L" if c == 1 else "RGB", (w, h))
        for kind in task.augmentations:
            assert seed_transform(task, kind)(image).shape == task.input_shape, (task.name, kind)


def test_seed_epoch_trains_the_model():
    task = TASKS["cifar10"]  # its BatchNorm1d head fails on a batch of one
    config = resolve_config(task, {"batch_size": 8})
    split = synthetic(task, 17, CPU).train
    torch.manual_seed(0)
    model = build_model(task.model, task.num_classes, task.input_shape, **model_knobs(task, config))
    before = [p.detach().clone() for p in model.parameters()]
    loader = seed_loader(task, config, split, CPU, workers=0)
    seen, loss = seed_epoch(model, loader, build_optimizer(model, config), nn.CrossEntropyLoss(), CPU)
    assert seen == 16  # 17 = 2 x 8 + a straggler of one, dropped as our loop drops it
    assert math.isfinite(loss) and loss > 0
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)]
    assert all(changed)  # every parameter got a gradient step


def test_forward_flops_per_image_counts_matmuls_and_lstm():
    linear = nn.Sequential(nn.Flatten(), nn.Linear(10, 5))
    assert forward_flops_per_image(linear, (1, 2, 5)) == 2 * 10 * 5
    # The LSTM's gate matmuls, 2 FLOPs per multiply-add over every weight matrix for each of the
    # 28 rows, plus its linear head: oneDNN's fused LSTM op would hide them from the counter.
    lstm = build_model("row_lstm", 2, (1, 28, 28), hidden=16, layers=2, dropout=0.0)
    weights = 4 * 16 * 28 + 3 * (4 * 16 * 16)  # w_ih and w_hh of layer 1, both of layer 2
    mkldnn = torch.backends.mkldnn.enabled
    assert forward_flops_per_image(lstm, (1, 28, 28)) == 2 * 28 * weights + 2 * 16 * 2
    assert torch.backends.mkldnn.enabled == mkldnn  # the switch is put back


def test_peak_flops_by_gpu_name():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12  # not the SXM figure, though the name has "H100"
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA GeForce RTX 3090") is None
