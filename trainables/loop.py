"""The one training loop every task and model family shares.

Data arrives as uint8 tensors already on the device; each epoch shuffles with ``randperm``,
slices batches, augments and normalises them on the device. The run reports (``on_epoch``)
``reports_per_epoch`` times an epoch, one host sync per report; it stops on its own at the end
of its horizon, when the next report would not fit the time budget (the 10-minute rule), or
when the loss diverges. The learning-rate schedule runs over the horizon, so a run stopped at a
report is exactly the prefix of the same run continued (docs/search-design.md).

The budget is the run's whole cost: its clock starts with the caller's set-up (``started``),
and training stops early enough to leave the validation pass that ends every report its time.
Every report's ``val_loss`` and ``val_acc`` are on the whole validation split.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hpsearch.trainables.augment import augment
from hpsearch.trainables.compiled import compile_for_training, wants_compile
from hpsearch.trainables.data.splits import Split, Splits
from hpsearch.trainables.models import build_model, count_params
from hpsearch.trainables.optim import Schedule, build_optimizer
from hpsearch.trainables.precision import Precision, choose_precision
from hpsearch.trainables.tasks import Task, normalise

# Why a run ended; the search and the tracker read these names.
COMPLETED, BUDGET, DIVERGED = "completed", "budget", "diverged"
EVAL_BATCH = 1024
# The numbers in every report (beside `epoch`, the report's number, and `stopped`): what the
# tracker and a retrain log at step=epoch.
REPORT_METRICS = (
    "epochs_done",
    "horizon_epochs",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "epoch_time_s",
    "time_total_s",
    "gpu_peak_mem_gb",  # CUDA runs only: the most memory the run's tensors have held so far
)
# A fitted horizon plans each report this much slower than the first one was. Small: the first
# report is already the slowest (warm-up), and a horizon planned a little too long costs little
# (the budget cuts a cosine at 90% of its horizon with the lr at 2% of its peak), while one
# planned too short leaves budget unused.
FIT_MARGIN = 1.05
MIN_PART = 0.25  # a last, partial report trains at least this share of a report
VAL_PROBE = 256  # images timed before training, to predict the first validation pass


@dataclass(frozen=True)
class Horizon:
    """How far a run trains, how often it reports, and whether the time budget may shorten it.

    ``epochs`` may be fractional (a search whose trials report at quarter epochs can end at
    1.75). With ``fit_budget``, after the first report the horizon shrinks to the reports that
    the budget still fits, measured on that report, the last one possibly a part of a report:
    the schedule then decays over what the run can really train, not over epochs it will never
    reach.
    """

    epochs: float
    reports_per_epoch: int = 1
    fit_budget: bool = False

    @property
    def reports(self) -> int:
        return max(1, math.ceil(self.epochs * self.reports_per_epoch - 1e-9))


@dataclass
class TrainResult:
    model: nn.Module  # holding the best report's weights
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0  # the best report's number (an epoch when reporting once per epoch)
    best_val_acc: float = 0.0
    stopped: str = COMPLETED
    train_time_s: float = 0.0
    n_params: int = 0
    horizon_epochs: float = 0.0  # the schedule's horizon as it was finally planned
    precision: str = ""  # the arithmetic it trained in (trainables/precision.py)
    compiled: bool = False  # trained through torch.compile (trainables/compiled.py)
    compile_s: float | None = None  # the compiling warm-up's seconds, on the run's clock


def pick_device(gpus: float) -> torch.device:
    return torch.device("cuda") if gpus > 0 and torch.cuda.is_available() else torch.device("cpu")


def train(
    task: Task,
    config: dict[str, Any],
    data: Splits,
    *,
    device: torch.device,
    budget_s: float = 600.0,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    keep_best: bool = True,
    horizon: Horizon | None = None,
    started: float | None = None,
    precision: Precision | None = None,
    compile_mode: str = "off",
) -> TrainResult:
    """Train ``task``'s model under ``config`` on ``data`` (already on ``device``).

    ``horizon`` defaults to ``config["epochs"]``, one report per epoch. ``started`` is the
    ``time.perf_counter()`` at which the budget's clock started (default: now), so a caller's
    own set-up (a trial's data hand-over) counts against the budget too. ``precision`` defaults
    to what the device does best (``choose_precision``); ``compile_mode`` says whether a CUDA run
    is compiled (trainables/compiled.py: ``auto``, ``on`` or ``off``). The returned model
    holds the best validation report's weights, or with ``keep_best`` False the last one's (when
    validation data was trained on, its accuracy picks nothing).
    """
    started = time.perf_counter() if started is None else started
    horizon = horizon or Horizon(float(config["epochs"]))
    torch.manual_seed(config["seed"])
    gen = torch.Generator(device=device).manual_seed(config["seed"])
    model = build_task_model(task, config).to(device)
    cuda = device.type == "cuda"
    memory_format = memory_format_for(device, task)
    model = model.to(memory_format=memory_format)
    optimizer = build_optimizer(model, config)
    schedule = Schedule(optimizer, config, horizon.epochs)
    precision = precision or choose_precision(device)
    autocast, scaler = precision.autocast(), precision.grad_scaler()
    result = TrainResult(model=model, n_params=count_params(model), horizon_epochs=horizon.epochs)
    result.precision = precision.name
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    best_state = copy.deepcopy(model.state_dict())
    # What runs the batches: the model, or the model compiled (sharing its parameters), compiled
    # here in a warm-up that leaves no trace, on the run's clock (trainables/compiled.py).
    net = model
    if wants_compile(compile_mode, device, task.model):

        def warm_up(compiled: nn.Module) -> None:
            _warm_up(compiled, model, data.train, task, config, autocast, memory_format)

        net, result.compile_s = compile_for_training(model, warm_up)
    result.compiled = net is not model

    n, per_epoch = len(data.train), horizon.reports_per_epoch
    batches = _batches(n, config["batch_size"], gen)
    planned, seen, slowest_train = horizon.reports, 0, 0.0
    # Training stops this long before the deadline, so that the validation pass ending the
    # report still fits: predicted from a probe at first (an untrained model's forward costs
    # what a trained one's does), then the last pass as measured.
    val_s = _time_validation(net, data.val, task, autocast, memory_format)
    report_no = 0
    while report_no < planned:
        report_no += 1
        span_start = time.perf_counter()
        seen_before = seen
        until = round(min(report_no / per_epoch, result.horizon_epochs) * n)
        net.train()
        lr = schedule.set(seen / n)
        train_loss, train_acc, seen, out_of_time = _train_span(
            net,
            data.train,
            batches,
            seen,
            until,
            task,
            config,
            schedule,
            optimizer,
            autocast,
            memory_format,
            gen,
            deadline=started + budget_s - FIT_MARGIN * val_s,
            scaler=scaler,
        )
        val_started = time.perf_counter()
        val_loss, val_acc = evaluate(net, data.val, task, autocast, memory_format)
        now = time.perf_counter()
        val_s = now - val_started
        span_s = now - span_start
        share = (seen - seen_before) / n * per_epoch  # of a whole report's training
        if share > 0:
            slowest_train = max(slowest_train, (span_s - val_s) / share)
        if report_no == 1 and horizon.fit_budget:
            fits = _reports_that_fit(budget_s - (now - started), slowest_train, val_s)
            if 1 + fits < result.horizon_epochs * per_epoch:
                planned = math.ceil(1 + fits - 1e-9)
                result.horizon_epochs = schedule.horizon_epochs = (1 + fits) / per_epoch
        # A diverged report's weights are NaN: never keep them as the best, even the first.
        if math.isfinite(train_loss) and (val_acc > result.best_val_acc or not result.best_epoch):
            result.best_epoch, result.best_val_acc = report_no, val_acc
            best_state = copy.deepcopy(model.state_dict())

        if not math.isfinite(train_loss):
            result.stopped = DIVERGED
        elif out_of_time:
            result.stopped = BUDGET  # cut short by the deadline mid-span
        elif report_no == planned:
            result.stopped = COMPLETED
        elif (
            now - started + _next_report_s(report_no, per_epoch, result.horizon_epochs, slowest_train, val_s)
            > budget_s
        ):
            # Predicted from the slowest training so far, so a run never starts a report it
            # can't finish.
            result.stopped = BUDGET
        else:
            result.stopped = ""
        report = {
            "epoch": report_no,
            "epochs_done": seen / n,
            "horizon_epochs": result.horizon_epochs,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": lr,
            "epoch_time_s": span_s,
            "time_total_s": now - started,
            "stopped": result.stopped,  # empty while the run goes on
            "precision": precision.name,
            "compiled": result.compiled,
        }
        if cuda:  # read at the report's sync: no extra one
            report["gpu_peak_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        result.history.append(report)
        if on_epoch is not None:
            on_epoch(report)
        if result.stopped:
            break

    result.train_time_s = time.perf_counter() - started
    if keep_best:
        model.load_state_dict(best_state)
    return result


def _warm_up(
    net: nn.Module,
    model: nn.Module,
    split: Split,
    task: Task,
    config: dict[str, Any],
    autocast: Any,
    memory_format: Any,
) -> None:
    """A training step's forward and backward and an eval forward through ``net``, on the first
    batch of ``split``, that leave no trace: no optimizer step, the gradients cleared, batch
    norm's statistics and the random state (dropout's) as they were. What they do is compile."""
    buffers = [b.detach().clone() for b in model.buffers()]
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    batch = slice(0, min(len(split), config["batch_size"]))
    x = normalise(split.x[batch].float().div_(255), task).contiguous(memory_format=memory_format)
    net.train()
    with autocast:
        loss = F.cross_entropy(net(x), split.y[batch])
    loss.backward()
    model.zero_grad(set_to_none=True)
    net.eval()
    with torch.no_grad(), autocast:
        net(x)
    with torch.no_grad():
        for buffer, saved in zip(model.buffers(), buffers, strict=True):
            buffer.copy_(saved)
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state_all(cuda_rng)


def _reports_that_fit(left_s: float, report_train_s: float, val_s: float) -> float:
    """Reports (whole, then a last partial one) that ``left_s`` fits, with ``FIT_MARGIN``.

    A report costs its training and a validation pass; a last report of part of the training
    still costs a whole pass, so it is planned only if it trains at least ``MIN_PART``.
    """
    per_report = FIT_MARGIN * (report_train_s + val_s)
    if per_report <= 0:
        return math.inf
    whole = math.floor(left_s / per_report)
    rest = left_s - whole * per_report - FIT_MARGIN * val_s
    part = rest / (FIT_MARGIN * report_train_s) if report_train_s > 0 else 0.0
    return whole + (part if MIN_PART <= part < 1 else 0.0)


def _next_report_s(done: int, per_epoch: int, horizon: float, report_train_s: float, val_s: float) -> float:
    """The next report's predicted time: its share of a report's training, and a validation pass."""
    share = min(1.0, horizon * per_epoch - done)
    return share * report_train_s + val_s


def _batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor | None, int]]:
    """(indices, count) of every batch, epoch after epoch, each epoch shuffled anew.

    A straggler batch of one image breaks BatchNorm: it is skipped (indices None) but still
    counted, so that epochs of data seen stay whole numbers at each epoch's end.
    """
    while True:
        order = torch.randperm(n, device=gen.device, generator=gen)
        for begin in range(0, n, batch_size):
            idx = order[begin : begin + batch_size]
            yield (None if len(idx) < 2 and begin else idx), len(idx)


def _train_span(
    model: nn.Module,
    split: Split,
    batches: Iterator[tuple[torch.Tensor | None, int]],
    seen: int,
    until: int,
    task: Task,
    config: dict[str, Any],
    schedule: Schedule,
    optimizer: torch.optim.Optimizer,
    autocast: Any,
    memory_format: torch.memory_format,
    gen: torch.Generator,
    deadline: float,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[float, float, int, bool]:
    """Train from ``seen`` images up to ``until``; (mean loss, accuracy, images seen, out of time)."""
    n = len(split)
    # Sums stay on the device: one host sync per report, not per batch.
    loss_sum = torch.zeros((), device=split.x.device)
    correct = torch.zeros((), device=split.x.device, dtype=torch.long)
    trained = 0
    out_of_time = False
    batch_s = 0.0
    while seen < until:
        if trained and time.perf_counter() + batch_s > deadline:
            # The next batch would end past the deadline: stop before it (but train one, so
            # that a report always stands for some training).
            out_of_time = True
            break
        batch_started = time.perf_counter()
        idx, count = next(batches)
        if idx is None:
            seen += count
            continue
        schedule.set(seen / n)
        x = augment(split.x[idx].float().div_(255), config["augment"], gen)
        x = normalise(x, task).contiguous(memory_format=memory_format)
        y = split.y[idx]
        with autocast:
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=config["label_smoothing"])
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:  # fp16: scaled so that small gradients survive; a step with inf/NaN is skipped
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        loss_sum += loss.detach() * count
        correct += (logits.argmax(1) == y).sum()
        seen += count
        trained += count
        # (On a GPU the clock sees launches, not the work; the report's sync bounds the lag.)
        batch_s = time.perf_counter() - batch_started
    trained = max(trained, 1)
    return (loss_sum / trained).item(), correct.item() / trained, seen, out_of_time


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    split: Split,
    task: Task,
    autocast: Any = None,
    memory_format: Any = torch.preserve_format,
) -> torch.Tensor:
    """Softmax outputs for every image of ``split`` (float32, on the split's device)."""
    model.eval()
    autocast = autocast or nullcontext()
    out = []
    for begin in range(0, len(split), EVAL_BATCH):
        x = normalise(split.x[begin : begin + EVAL_BATCH].float().div_(255), task)
        with autocast:
            out.append(model(x.contiguous(memory_format=memory_format)).float().softmax(1))
    return torch.cat(out)


def evaluate(
    model: nn.Module,
    split: Split,
    task: Task,
    autocast: Any = None,
    memory_format: Any = torch.preserve_format,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``split``."""
    return score(predict_proba(model, split, task, autocast, memory_format), split.y)


def score(probs: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of softmax outputs ``probs`` against labels ``y``."""
    loss = F.nll_loss(probs.clamp_min(1e-12).log(), y).item()
    return loss, (probs.argmax(1) == y).float().mean().item()


def outputs_as_trained(model: nn.Module, split: Split, task: Task) -> tuple[torch.Tensor, float, float]:
    """(softmax outputs, loss, accuracy) on ``split`` in one pass, computed as the model trained:
    in the precision and memory layout of its device (a retrain's test, an export's check)."""
    device = next(model.parameters()).device
    model = model.to(memory_format=memory_format_for(device, task))
    probs = predict_proba(
        model, split, task, choose_precision(device).autocast(), memory_format_for(device, task)
    )
    return (probs, *score(probs, split.y))


def memory_format_for(device: torch.device, task: Task) -> torch.memory_format:
    # channels_last helps convolutions on tensor cores; the LSTM reads rows and gains nothing.
    return (
        torch.channels_last if device.type == "cuda" and task.model != "row_lstm" else torch.preserve_format
    )


def _time_validation(model: nn.Module, split: Split, task: Task, autocast: Any, memory_format: Any) -> float:
    """Seconds one pass over ``split`` will take, from a pass over its first ``VAL_PROBE`` images.

    Eval-mode forwards change no weights and no random state, so the run trains as if the
    probe had not happened.
    """
    n = min(len(split), VAL_PROBE)
    if n == 0:
        return 0.0
    started = time.perf_counter()
    evaluate(model, Split(split.x[:n], split.y[:n]), task, autocast, memory_format)
    return (time.perf_counter() - started) * len(split) / n


def build_task_model(task: Task, config: dict[str, Any]) -> torch.nn.Module:
    """``task``'s model family with ``config``'s knobs, on the CPU."""
    return build_model(task.model, task.num_classes, task.input_shape, **_model_knobs(task, config))


def _model_knobs(task: Task, config: dict[str, Any]) -> dict[str, Any]:
    from hpsearch.trainables.models import MODELS

    return {k: config[k] for k in MODELS[task.model].defaults if k in config}
