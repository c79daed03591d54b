"""The training loop on tiny in-memory data: reports, budget, divergence, repeatability, best epoch."""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from search_helpers import random_splits
from torch import nn

import hpsearch.trainables.loop
import hpsearch.trainables.tasks
from hpsearch.search.space import Space, load_space
from hpsearch.trainables.augment import AUGMENTATIONS, augment
from hpsearch.trainables.config import resolve_config
from hpsearch.trainables.data.splits import Split, Splits
from hpsearch.trainables.loop import Horizon, evaluate, train
from hpsearch.trainables.models import MODELS, ModelFamily, count_params
from hpsearch.trainables.tasks import TASKS, Task

CPU = torch.device("cpu")
SPACES_DIR = Path(__file__).resolve().parents[1] / "spaces"
REPORT_KEYS = {
    "epoch",
    "epochs_done",
    "horizon_epochs",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "epoch_time_s",
    "time_total_s",
    "stopped",
    "precision",
    "compiled",  # False: the CPU never compiles
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@functools.cache
def spaces_by_task() -> dict[str, Space]:
    spaces = (load_space(p) for p in sorted(SPACES_DIR.glob("*.py")) if not p.name.startswith("_"))
    return {s.task.name: s for s in spaces}


def baseline(task: Task) -> dict:
    """The task's seed configuration from its space file (the defaults if it has none)."""
    space = spaces_by_task().get(task.name)
    return space.baseline if space else resolve_config(task)


def block_splits(task: Task, n_train: int, n_val: int, val_shift: int = 0) -> Splits:
    """Learnable images: class k is a bright block in cell k of a grid over dark noise.

    ``val_shift`` labels the validation images ``(k + shift) % classes``: with a shift the
    better the model learns train, the worse it does on val.
    """
    gen = torch.Generator().manual_seed(0)
    c, h, w = task.input_shape
    grid = math.ceil(math.sqrt(task.num_classes))
    cell_h, cell_w = h // grid, w // grid

    def split(n: int, shift: int) -> Split:
        y = torch.arange(n) % task.num_classes
        x = torch.randint(0, 64, (n, c, h, w), dtype=torch.uint8, generator=gen)
        for i, k in enumerate(y.tolist()):
            r, col = divmod(k, grid)
            x[i, :, r * cell_h : (r + 1) * cell_h, col * cell_w : (col + 1) * cell_w] = 255
        return Split(x, (y + shift) % task.num_classes)

    return Splits(
        split(n_train, 0), split(n_val, val_shift), split(n_val, 0), [str(k) for k in range(task.num_classes)]
    )


def history_values(history: list[dict]) -> list[tuple]:
    # Everything but the wall-clock times.
    return [(r["train_loss"], r["train_acc"], r["val_loss"], r["val_acc"], r["lr"]) for r in history]


@pytest.mark.parametrize("task_name", list(TASKS))
def test_train_runs_one_epoch_of_the_baseline_for_every_task(task_name):
    task = TASKS[task_name]
    config = resolve_config(task, baseline(task), {"epochs": 1, "batch_size": 4})
    reports = []
    result = train(task, config, random_splits(task, 8, 4), device=CPU, on_epoch=reports.append)
    assert reports == result.history and len(reports) == 1
    report = reports[0]
    assert set(report) == REPORT_KEYS
    assert report["compiled"] is False
    assert report["epoch"] == 1 and report["stopped"] == "completed" == result.stopped
    assert report["lr"] == config["lr"]  # the rate the epoch trained with, before the schedule steps
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s", "time_total_s"):
        assert math.isfinite(report[key]), key
    assert 0 <= report["train_acc"] <= 1 and 0 <= report["val_acc"] <= 1
    assert result.n_params == count_params(result.model) > 0


def test_train_reports_once_per_epoch():
    task = TASKS["cifar10"]
    config = resolve_config(task, {"epochs": 3, "batch_size": 8})
    reports = []
    result = train(task, config, random_splits(task, 16, 8), device=CPU, on_epoch=reports.append)
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    # `stopped` stays empty while the run goes on and names the reason on the last report only.
    assert [r["stopped"] for r in reports] == ["", "", "completed"]
    assert reports == result.history


def test_train_reports_the_scheduled_learning_rate():
    task = TASKS["cifar10"]
    config = resolve_config(task, {"epochs": 3, "batch_size": 8, "schedule": "step", "step_size": 1})
    result = train(task, config, random_splits(task, 16, 8), device=CPU)
    lr, gamma = config["lr"], config["gamma"]
    assert [r["lr"] for r in result.history] == pytest.approx([lr, lr * gamma, lr * gamma**2])


class FakeClock:
    """The budget's clock in a test: time passes only when the model computes (``TimedModel``),
    so a budget test says the same on a fast machine, a slow one and a busy one."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TimedModel(nn.Module):
    """A linear classifier whose forward passes cost fake seconds on ``clock``: ``costs["train_s"]``
    per image in training mode, ``costs["eval_s"]`` per image in evaluation."""

    def __init__(self, num_classes: int, input_shape: tuple, clock: FakeClock, costs: dict) -> None:
        super().__init__()
        self.head = nn.Linear(math.prod(input_shape), num_classes)
        self.clock, self.costs = clock, costs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.now += self.costs["train_s" if self.training else "eval_s"] * len(x)
        return self.head(x.flatten(1))


@pytest.fixture
def timed(monkeypatch) -> SimpleNamespace:
    """An MNIST-shaped task whose model runs on a fake clock: set the costs, pass the clock."""
    clock, costs = FakeClock(), {"train_s": 0.01, "eval_s": 0.001}
    family = ModelFamily(
        "timed_model", lambda num_classes, input_shape: TimedModel(num_classes, input_shape, clock, costs), {}
    )
    monkeypatch.setitem(MODELS, family.name, family)
    task = dataclasses.replace(TASKS["mnist"], name="timed_task", model=family.name)
    return SimpleNamespace(task=task, clock=clock, costs=costs)


def test_train_budget_stops_before_an_epoch_that_would_not_fit(timed):
    task, costs = timed.task, timed.costs
    data = random_splits(task, 64, 8)
    config = resolve_config(task, {"epochs": 100, "batch_size": 8})
    epoch_s = 64 * costs["train_s"] + 8 * costs["eval_s"]  # an epoch's training and validation
    budget = 3.5 * epoch_s
    result = train(task, config, data, device=CPU, budget_s=budget, clock=timed.clock)
    history = result.history
    assert result.stopped == "budget" == history[-1]["stopped"]
    # The rule, checked on the run's own reported times: an epoch started only if the slowest
    # epoch so far still fitted in what was left of the budget.
    for i, report in enumerate(history[:-1]):
        slowest = max(r["epoch_time_s"] for r in history[: i + 1])
        assert report["time_total_s"] + slowest <= budget
    # Three epochs (and the first validation pass's probe) fit; a fourth would not, so the run
    # ends within the budget without leaving an epoch's worth of it unused.
    assert len(history) == 3
    assert history[-1]["time_total_s"] <= budget < history[-1]["time_total_s"] + epoch_s


def test_train_budget_cuts_an_epoch_that_alone_is_too_long(timed):
    task, costs = timed.task, timed.costs
    data = random_splits(task, 384, 8)  # 96 batches of 4: an epoch of 3.84 s on the fake clock
    config = resolve_config(task, {"epochs": 1, "batch_size": 4})
    batch_s, val_s = 4 * costs["train_s"], 8 * costs["eval_s"]
    budget = 0.5
    result = train(task, config, data, device=CPU, budget_s=budget, clock=timed.clock)
    report = result.history[-1]
    # The deadline is checked after every batch: the run stops mid-epoch, not an epoch late,
    # and a cut-short last epoch is a budget stop, not a completed run.
    assert result.stopped == "budget" and len(result.history) == 1
    assert 0 < report["epochs_done"] < 1
    # It stopped at the last batch that fitted before the validation pass that ends the report.
    assert budget - batch_s - 2 * val_s < report["time_total_s"] <= budget


def test_train_leaves_time_for_the_validation_pass_that_ends_a_budget_cut_report(timed):
    task = timed.task
    timed.costs.update(train_s=1e-3, eval_s=1e-2)  # a validation pass of a second on 100 images
    data = random_splits(task, 2000, 100)  # an epoch of 2 s of training: past the budget
    config = resolve_config(task, {"epochs": 1, "batch_size": 4})
    budget = 3.0
    result = train(task, config, data, device=CPU, budget_s=budget, clock=timed.clock)
    report = result.history[-1]
    assert result.stopped == "budget" and 0 < report["epochs_done"] < 1
    # Training stopped a validation pass before the deadline: evaluating after it (a second
    # here) would have ended the report past the budget. (The first second went to the probe
    # that predicts the validation pass.)
    assert budget - 1.1 < report["time_total_s"] <= budget
    assert result.train_time_s == report["time_total_s"]


def test_a_fitted_horizon_ends_with_a_partial_report_only_where_it_trains_enough():
    from hpsearch.trainables.loop import FIT_MARGIN, _reports_that_fit

    # 100 s left, reports of 20 s training + 5 s validation: 3 whole ones (with the margin),
    # then 16 s, which after its validation pass trains 0.76 of a report.
    assert _reports_that_fit(100, 20, 5) == pytest.approx(3 + (100 - 3 * 26.25 - 5.25) / 21)
    assert FIT_MARGIN == 1.05  # (the figures above)
    # Validation as long as the training: what is left after two reports pays only a pass.
    assert _reports_that_fit(100, 20, 20) == 2
    # A sliver of training is not worth a validation pass.
    assert _reports_that_fit(31, 20, 5) == 1


def test_train_stops_when_the_loss_diverges():
    task = TASKS["mnist"]
    config = resolve_config(task, {"optimizer": "sgd", "lr": 1e6, "epochs": 3, "batch_size": 16})
    result = train(task, config, random_splits(task, 64, 16), device=CPU)  # no exception
    assert result.stopped == "diverged" == result.history[-1]["stopped"]
    assert len(result.history) == 1  # the first non-finite epoch ends the run
    assert not math.isfinite(result.history[-1]["train_loss"])


class NaNModel(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(1, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean((1, 2, 3)).unsqueeze(1)) * float("nan")


def test_train_stops_a_model_that_outputs_nan(monkeypatch):
    family = ModelFamily("nan_model", lambda num_classes, input_shape: NaNModel(num_classes), {})
    monkeypatch.setitem(MODELS, family.name, family)
    task = dataclasses.replace(TASKS["mnist"], name="nan_task", model=family.name)
    config = resolve_config(task, {"epochs": 5, "batch_size": 8})
    result = train(task, config, random_splits(task, 16, 8), device=CPU)
    assert result.stopped == "diverged" and len(result.history) == 1


def test_train_is_repeatable_on_cpu():
    task = TASKS["mnist"]
    # Augmentation, dropout and shuffling all draw random numbers: all must follow the seed.
    config = resolve_config(task, {"epochs": 2, "batch_size": 16, "augment": "affine", "channels": 8})
    data = random_splits(task, 64, 16)
    first, again = (train(task, config, data, device=CPU) for _ in range(2))
    other = train(task, resolve_config(task, config, {"seed": 1}), data, device=CPU)
    assert history_values(first.history) == history_values(again.history)
    assert history_values(first.history) != history_values(other.history)


def test_train_keeps_the_best_epochs_weights():
    task = TASKS["cifar10"]
    # Val labels are shifted by one class: learning train makes val worse, so no later epoch beats
    # the first (a tie keeps the earlier epoch) and restoring it is visible in the val loss.
    data = block_splits(task, 96, 40, val_shift=1)
    config = resolve_config(task, {"epochs": 3, "batch_size": 16, "lr": 3e-3})
    result = train(task, config, data, device=CPU)
    history = result.history
    assert result.best_val_acc == max(r["val_acc"] for r in history)
    assert history[result.best_epoch - 1]["val_acc"] == result.best_val_acc
    assert result.best_epoch < len(history)  # the setup worked: the last epoch is not the best
    val_loss, val_acc = evaluate(result.model, data.val, task)
    assert val_acc == pytest.approx(result.best_val_acc)
    assert val_loss == pytest.approx(history[result.best_epoch - 1]["val_loss"], rel=1e-5)
    assert val_loss != pytest.approx(history[-1]["val_loss"], rel=1e-3)  # not the last epoch's model


@pytest.mark.parametrize("metric, mode, kept", [("val_acc", "max", 3), ("val_loss", "min", 2)])
def test_train_keeps_the_weights_of_the_report_best_by_the_searchs_metric(monkeypatch, metric, mode, kept):
    task = TASKS["mnist"]
    data = random_splits(task, 32, 300)  # more validation images than the probe's 256
    config = resolve_config(task, {"epochs": 3, "batch_size": 8, "channels": 4, "fc1": 16, "fc2": 16})
    # Validation scores (loss, accuracy) by report: the 2nd has the lowest loss, the 3rd the
    # highest accuracy. (The probe timing the first pass is scored for real.)
    scores = [(1.0, 0.5), (0.5, 0.4), (0.8, 0.9)]
    passes = iter(scores)
    loop = hpsearch.trainables.loop
    real_evaluate, real_build = loop.evaluate, loop.build_task_model

    def scripted(model, split, *args):
        return next(passes) if len(split) == len(data.val) else real_evaluate(model, split, *args)

    monkeypatch.setattr(loop, "evaluate", scripted)
    models, weights = [], []
    monkeypatch.setattr(loop, "build_task_model", lambda *a: models.append(real_build(*a)) or models[-1])
    result = train(
        task,
        config,
        data,
        device=CPU,
        metric=metric,
        mode=mode,
        on_epoch=lambda report: weights.append(copy.deepcopy(models[0].state_dict())),
    )
    assert len(weights) == 3 and result.best_epoch == kept and result.metric == metric
    loss, acc = scores[kept - 1]
    assert result.best_value == (acc if metric == "val_acc" else loss) and result.best_val_acc == acc
    final = result.model.state_dict()
    assert all(torch.equal(final[k], weights[kept - 1][k]) for k in final)  # the kept report's weights
    other = weights[2 if kept == 2 else 1]
    assert not all(torch.equal(final[k], other[k]) for k in final)  # (reports' weights do differ)


def test_train_refuses_to_keep_the_best_by_a_metric_it_does_not_report():
    task = TASKS["mnist"]
    config = resolve_config(task, {"epochs": 1, "batch_size": 8})
    with pytest.raises(ValueError, match="val_acc"):
        train(task, config, random_splits(task, 8, 4), device=CPU, metric="train_loss")
    with pytest.raises(ValueError, match="max or min"):
        train(task, config, random_splits(task, 8, 4), device=CPU, mode="maximize")


def test_train_learns_learnable_data():
    task = TASKS["cifar10"]
    data = block_splits(task, 96, 40)
    result = train(task, resolve_config(task, {"epochs": 2, "batch_size": 16, "lr": 3e-3}), data, device=CPU)
    assert result.best_val_acc > 0.5  # chance is 0.1


@pytest.mark.parametrize("kind", AUGMENTATIONS)
@pytest.mark.parametrize("shape", [(6, 1, 28, 28), (6, 3, 32, 32)], ids=["gray", "color"])
def test_augment_keeps_shape_dtype_and_range(kind, shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    out = augment(x, kind, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    # Warps mix pixels and pad with zeros (black), so values stay in 0..1.
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1 + 1e-6
    again = augment(x, kind, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # the generator decides everything
    if kind == "none":
        assert out is x
    else:
        assert not torch.equal(out, x)


def test_augment_flip_mirrors_some_images_and_keeps_the_rest():
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = augment(x, "flip", torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)


def test_augment_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'"):
        augment(torch.zeros(1, 1, 4, 4), "rotate", torch.Generator())


def test_train_reports_at_fractions_of_an_epoch_and_schedules_over_data_seen():
    task = TASKS["cifar10"]
    config = resolve_config(task, {"epochs": 2, "batch_size": 4, "schedule": "cosine"})
    data = random_splits(task, 32, 8)
    result = train(task, config, data, device=CPU, horizon=Horizon(1.5, reports_per_epoch=4))
    history = result.history
    # Six reports at quarter epochs (8 images each), the last at the horizon's 1.5 epochs.
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
    assert [r["epochs_done"] for r in history] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    assert [r["stopped"] for r in history] == [""] * 5 + ["completed"]
    # Each report's lr is the cosine over the 1.5-epoch horizon at the data seen when it began.
    expected = [config["lr"] * 0.5 * (1 + math.cos(math.pi * (k / 4) / 1.5)) for k in range(6)]
    assert [r["lr"] for r in history] == pytest.approx(expected)


def test_train_stopped_at_a_report_is_the_prefix_of_the_same_run_continued():
    # What ASHA relies on: the first reports of a long run are those of the same run stopped early.
    task = TASKS["mnist"]
    config = resolve_config(task, {"batch_size": 16, "schedule": "cosine", "channels": 8, "fc1": 32})
    data = random_splits(task, 64, 16)
    seen = []

    def stop_after_two(report):
        seen.append(report)
        if len(seen) == 2:
            raise StopIteration  # as a scheduler's stop ends a trial between reports

    with pytest.raises(StopIteration):
        train(
            task, config, data, device=CPU, horizon=Horizon(6, reports_per_epoch=2), on_epoch=stop_after_two
        )
    whole = train(task, config, data, device=CPU, horizon=Horizon(6, reports_per_epoch=2)).history
    assert history_values(seen) == history_values(whole[:2])
    # Whereas the horizon is part of the run: a shorter one decays sooner and parts ways at once.
    shorter = train(task, config, data, device=CPU, horizon=Horizon(2, reports_per_epoch=2)).history
    assert shorter[1]["lr"] < whole[1]["lr"]


def test_train_fits_its_horizon_to_the_budget_after_the_first_report(timed):
    task, costs = timed.task, timed.costs
    data = random_splits(task, 64, 8)
    config = resolve_config(task, {"batch_size": 8, "schedule": "cosine"})
    epoch_s = 64 * costs["train_s"] + 8 * costs["eval_s"]
    budget = 4.5 * epoch_s
    result = train(
        task,
        config,
        data,
        device=CPU,
        budget_s=budget,
        horizon=Horizon(100, fit_budget=True),
        clock=timed.clock,
    )
    history = result.history
    # The horizon shrank to what fitted, so the schedule decayed to ~0 and the run completed it.
    assert 4 < result.horizon_epochs < 5
    assert history[-1]["horizon_epochs"] == result.horizon_epochs
    assert result.stopped == "completed" and len(history) == math.ceil(result.horizon_epochs)
    assert history[-1]["time_total_s"] <= budget
    # Reports at whole epochs, the last one at the horizon (a part of an epoch, where the budget
    # fitted a part of one more).
    assert [r["epochs_done"] for r in history[:-1]] == list(range(1, len(history)))
    assert history[-1]["epochs_done"] == pytest.approx(result.horizon_epochs, abs=1 / 8)
    assert history[-1]["lr"] < 0.5 * config["lr"]
    # Without fitting, the same budget cuts a 100-epoch cosine that has barely started decaying.
    unfitted = train(
        task, config, data, device=CPU, budget_s=budget, horizon=Horizon(100), clock=timed.clock
    )
    assert unfitted.stopped == "budget" and unfitted.history[-1]["lr"] > 0.99 * config["lr"]


@pytest.mark.parametrize("task_name", ["mnist", "cifar10", "font"])
def test_the_batch_loop_builds_no_tensor_from_python_data(monkeypatch, task_name):
    # On CUDA a tensor made from Python data in the batch loop is a copy and a sync per batch.
    # Counted over a whole run, 4 batches and 16 batches an epoch must build the same number.
    task = TASKS[task_name]
    built = []
    for name in ("tensor", "as_tensor"):
        original = getattr(torch, name)
        monkeypatch.setattr(
            torch,
            name,
            functools.partial(lambda f, n, *a, **k: built.append(n) or f(*a, **k), original, name),
        )

    def count(n_train: int) -> int:
        hpsearch.trainables.tasks._constants.cache_clear()
        built.clear()
        config = resolve_config(task, baseline(task), {"epochs": 1, "batch_size": 4, "augment": "none"})
        train(task, config, random_splits(task, n_train, 8), device=CPU)
        return len(built)

    assert count(16) == count(64)


def test_outputs_as_trained_scores_in_one_pass_what_evaluate_scores(monkeypatch):
    task = TASKS["mnist"]
    data = block_splits(task, 40, 20)
    config = resolve_config(task, {"epochs": 1, "batch_size": 8, "channels": 8, "fc1": 32, "fc2": 32})
    model = train(task, config, data, device=CPU).model
    loss, acc = evaluate(model, data.test, task)
    passes = []
    original = hpsearch.trainables.loop.predict_proba
    monkeypatch.setattr(
        hpsearch.trainables.loop, "predict_proba", lambda *a, **k: passes.append(1) or original(*a, **k)
    )
    probs, loss_once, acc_once = hpsearch.trainables.loop.outputs_as_trained(model, data.test, task)
    assert passes == [1]  # a retrain's test: one pass for the outputs, the loss and the accuracy
    assert (loss_once, acc_once) == pytest.approx((loss, acc))
    assert probs.shape == (len(data.test), task.num_classes)
    assert torch.allclose(probs.sum(1), torch.ones(len(data.test)))
