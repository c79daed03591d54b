"""The one training loop every task and model family shares.

Data arrives as uint8 tensors already on the device; each epoch shuffles with ``randperm``,
slices batches, augments and normalises them on the device. The run reports (``on_epoch``)
``reports_per_epoch`` times an epoch, one host sync per report; it stops on its own at the end
of its horizon, when the next report would not fit the time budget (the 10-minute rule), or
when the loss diverges. The learning-rate schedule runs over the horizon, so a run stopped at a
report is exactly the prefix of the same run continued (docs/search-design.md).

The budget is the run's whole cost: its clock starts with the caller's set-up (``started``),
and training stops early enough to leave the validation pass that ends every report its time.
Every report's ``val_loss`` and ``val_acc`` are on the whole validation split; the run keeps
the weights of its best report by the search's metric.
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
KEEP_METRICS = ("val_acc", "val_loss")  # what may pick the report whose weights a run keeps


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
    model: nn.Module  # holding the kept report's weights
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0  # the kept report's number (an epoch when reporting once per epoch)
    best_val_acc: float = 0.0  # the kept report's val_acc
    metric: str = "val_acc"  # what chose the kept report (``train``'s metric and mode)
    best_value: float | None = None  # the kept report's ``metric``
    stopped: str = COMPLETED
    train_time_s: float = 0.0
    n_params: int = 0
    horizon_epochs: float = 0.0  # the schedule's horizon as it was finally planned
    precision: str = ""  # the arithmetic it trained in (trainables/precision.py)
    compiled: bool = False  # trained through torch.compile (trainables/compiled.py)
    compile_s: float | None = None  # the compiling warm-up's seconds, on the run's clock


def pick_device(gpus: float) -> torch.device:
    return torch.device("cuda") if gpus > 0 and torch.cuda.is_available() else torch.device("cpu")


@dataclass
class _Run:
    """One run's state: what ``train`` sets up, and where its reports have got to."""

    task: Task
    config: dict[str, Any]
    data: Splits
    device: torch.device
    horizon: Horizon
    budget_s: float
    started: float  # clock() when the budget's clock started
    clock: Callable[[], float]
    metric: str  # what picks the kept report, in mode
    mode: str
    model: nn.Module
    net: nn.Module  # what runs the batches: the model, or the model compiled (sharing its parameters)
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    autocast: Any
    scaler: torch.amp.GradScaler | None
    memory_format: torch.memory_format
    gen: torch.Generator
    batches: Iterator[tuple[torch.Tensor | None, int]]
    shuffle: dict[str, torch.Tensor]  # the generator's state before this epoch's shuffle (_batches)
    result: TrainResult
    best_state: dict[str, torch.Tensor]
    planned: int  # the reports it plans to make (fewer once a fitted horizon shrinks)
    seen: int = 0  # training images seen
    report_no: int = 0
    slowest_train: float = 0.0  # the slowest training of a whole report so far, seconds
    # Training stops this long before the deadline, so that the validation pass ending the
    # report still fits: predicted from a probe at first (an untrained model's forward costs
    # what a trained one's does), then the last pass as measured.
    val_s: float = 0.0

    @property
    def n(self) -> int:
        return len(self.data.train)

    @property
    def per_epoch(self) -> int:
        return self.horizon.reports_per_epoch


def train(
    task: Task,
    config: dict[str, Any],
    data: Splits,
    *,
    device: torch.device,
    budget_s: float = 600.0,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    keep_best: bool = True,
    metric: str = "val_acc",
    mode: str = "max",
    horizon: Horizon | None = None,
    started: float | None = None,
    precision: Precision | None = None,
    compile_mode: str = "off",
    clock: Callable[[], float] = time.perf_counter,
    start: dict[str, Any] | None = None,
    on_state: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``task``'s model under ``config`` on ``data`` (already on ``device``).

    ``horizon`` defaults to ``config["epochs"]``, one report per epoch. ``clock`` is the budget's
    clock, in seconds (a test's fake one makes the budget independent of the machine's speed);
    ``started`` is its reading when the budget started (default: now), so a caller's own set-up
    (a trial's data hand-over) counts against the budget too. ``precision`` defaults to what the
    device does best (``choose_precision``); ``compile_mode`` says whether a CUDA run is compiled
    (trainables/compiled.py: ``auto``, ``on`` or ``off``). The returned model holds the weights
    of the report best by ``metric`` (``val_acc`` or ``val_loss``) in ``mode`` (``max`` or
    ``min``), the search's own; with ``keep_best`` False the last report's (when validation data
    was trained on, its scores pick nothing).

    ``on_state`` gets, before each report's ``on_epoch`` while the run goes on, what it takes to
    go on from that report (tensors shared with the run: save them before returning); ``start``,
    such a state, goes on from its report as the run would have, its time counted in the budget.
    """
    if metric not in KEEP_METRICS or mode not in ("max", "min"):
        raise ValueError(f"keep the best report by one of {KEEP_METRICS}, max or min; got {metric} {mode}")
    run = _set_up(
        task,
        config,
        data,
        device=device,
        horizon=horizon or Horizon(float(config["epochs"])),
        budget_s=budget_s,
        started=clock() if started is None else started,
        clock=clock,
        metric=metric,
        mode=mode,
        precision=precision or choose_precision(device),
        compile_mode=compile_mode,
    )
    if start is not None:
        _resume(run, start)
    while run.report_no < run.planned:
        report = _next_report(run)
        run.result.history.append(report)
        if on_state is not None and not report["stopped"]:
            on_state(_state(run, elapsed_s=report["time_total_s"]))
        if on_epoch is not None:
            on_epoch(report)
        if report["stopped"]:
            break
    run.result.train_time_s = run.clock() - run.started
    if keep_best:
        run.model.load_state_dict(run.best_state)
    return run.result


def _set_up(
    task: Task,
    config: dict[str, Any],
    data: Splits,
    *,
    device: torch.device,
    horizon: Horizon,
    budget_s: float,
    started: float,
    clock: Callable[[], float],
    metric: str,
    mode: str,
    precision: Precision,
    compile_mode: str,
) -> _Run:
    """The seeded model, its optimizer and schedule, compiled if wanted, and the first
    validation pass predicted: a run ready for its first report."""
    torch.manual_seed(config["seed"])
    gen = torch.Generator(device=device).manual_seed(config["seed"])
    memory_format = memory_format_for(device, task)
    model = build_task_model(task, config).to(device).to(memory_format=memory_format)
    optimizer = build_optimizer(model, config)
    autocast = precision.autocast()
    result = TrainResult(
        model=model,
        n_params=count_params(model),
        horizon_epochs=horizon.epochs,
        precision=precision.name,
        metric=metric,
    )
    if device.type == "cuda":
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
    shuffle: dict[str, torch.Tensor] = {}
    return _Run(
        task=task,
        config=config,
        data=data,
        device=device,
        horizon=horizon,
        budget_s=budget_s,
        started=started,
        clock=clock,
        metric=metric,
        mode=mode,
        model=model,
        net=net,
        optimizer=optimizer,
        schedule=Schedule(optimizer, config, horizon.epochs),
        autocast=autocast,
        scaler=precision.grad_scaler(),
        memory_format=memory_format,
        gen=gen,
        batches=_batches(len(data.train), config["batch_size"], gen, shuffle),
        shuffle=shuffle,
        result=result,
        best_state=best_state,
        planned=horizon.reports,
        val_s=_time_validation(net, data.val, task, autocast, memory_format, clock),
    )


def _next_report(run: _Run) -> dict[str, Any]:
    """Train up to the next report, validate, keep the weights if they are the best so far, and
    say whether the run stops here: the report."""
    result = run.result
    run.report_no += 1
    span_start = run.clock()
    seen_before = run.seen
    until = round(min(run.report_no / run.per_epoch, result.horizon_epochs) * run.n)
    run.net.train()
    lr = run.schedule.set(run.seen / run.n)
    deadline = run.started + run.budget_s - FIT_MARGIN * run.val_s
    train_loss, train_acc, out_of_time = _train_span(run, until, deadline)
    val_started = run.clock()
    val_loss, val_acc = evaluate(run.net, run.data.val, run.task, run.autocast, run.memory_format)
    now = run.clock()
    run.val_s = now - val_started
    span_s = now - span_start
    share = (run.seen - seen_before) / run.n * run.per_epoch  # of a whole report's training
    if share > 0:
        run.slowest_train = max(run.slowest_train, (span_s - run.val_s) / share)
    if run.report_no == 1 and run.horizon.fit_budget:
        _fit_horizon(run, left_s=run.budget_s - (now - run.started))
    _keep_if_best(run, train_loss, {"val_loss": val_loss, "val_acc": val_acc})
    result.stopped = _why_stopped(run, train_loss, out_of_time, elapsed_s=now - run.started)
    report = {
        "epoch": run.report_no,
        "epochs_done": run.seen / run.n,
        "horizon_epochs": result.horizon_epochs,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "lr": lr,
        "epoch_time_s": span_s,
        "time_total_s": now - run.started,
        "stopped": result.stopped,  # empty while the run goes on
        "precision": result.precision,
        "compiled": result.compiled,
    }
    if run.device.type == "cuda":  # read at the report's sync: no extra one
        report["gpu_peak_mem_gb"] = torch.cuda.max_memory_allocated(run.device) / 2**30
    return report


def _fit_horizon(run: _Run, left_s: float) -> None:
    """After the first report: shrink the horizon to the reports ``left_s`` still fits."""
    fits = _reports_that_fit(left_s, run.slowest_train, run.val_s)
    if 1 + fits < run.result.horizon_epochs * run.per_epoch:
        run.planned = math.ceil(1 + fits - 1e-9)
        run.result.horizon_epochs = run.schedule.horizon_epochs = (1 + fits) / run.per_epoch


def _keep_if_best(run: _Run, train_loss: float, scores: dict[str, float]) -> None:
    """Keep the report's weights if its ``run.metric`` is the best so far (a tie keeps the earlier)."""
    result, value = run.result, scores[run.metric]
    best = result.best_value
    better = best is None or (value > best if run.mode == "max" else value < best)
    # A diverged report's weights are NaN: never keep them as the best, even the first.
    if math.isfinite(train_loss) and better:
        result.best_epoch, result.best_value, result.best_val_acc = run.report_no, value, scores["val_acc"]
        run.best_state = copy.deepcopy(run.model.state_dict())


def _why_stopped(run: _Run, train_loss: float, out_of_time: bool, elapsed_s: float) -> str:
    """Why the run ends at this report; "" if it goes on."""
    if not math.isfinite(train_loss):
        return DIVERGED
    if out_of_time:
        return BUDGET  # cut short by the deadline mid-span
    if run.report_no == run.planned:
        return COMPLETED
    horizon = run.result.horizon_epochs
    next_s = _next_report_s(run.report_no, run.per_epoch, horizon, run.slowest_train, run.val_s)
    if elapsed_s + next_s > run.budget_s:
        # Predicted from the slowest training so far, so a run never starts a report it can't finish.
        return BUDGET
    return ""


def _state(run: _Run, elapsed_s: float) -> dict[str, Any]:
    """What ``train(start=...)`` needs to go on from this report: weights, optimizer, schedule,
    the kept report so far, and every random state, so the run goes on exactly as it would have."""
    result, cuda = run.result, run.device.type == "cuda"
    return {
        "report_no": run.report_no,
        "seen": run.seen,
        "planned": run.planned,
        "slowest_train": run.slowest_train,
        "elapsed_s": elapsed_s,
        "horizon_epochs": result.horizon_epochs,
        "best_epoch": result.best_epoch,
        "best_val_acc": result.best_val_acc,
        "best_value": result.best_value,
        "history": list(result.history),
        "model": run.model.state_dict(),
        "best_model": run.best_state,
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(run.device) if cuda else None,
            "gen": run.gen.get_state(),
            "shuffle": run.shuffle["rng"],
        },
    }


def _resume(run: _Run, start: dict[str, Any]) -> None:
    """Put a freshly set-up run where ``start`` (a ``_state``) left off."""
    run.model.load_state_dict(start["model"])
    run.optimizer.load_state_dict(start["optimizer"])
    if run.scaler is not None and start["scaler"] is not None:
        run.scaler.load_state_dict(start["scaler"])
    run.best_state = {k: v.to(run.device) for k, v in start["best_model"].items()}
    result = run.result
    result.horizon_epochs = run.schedule.horizon_epochs = start["horizon_epochs"]
    result.best_epoch, result.best_val_acc = start["best_epoch"], start["best_val_acc"]
    result.best_value, result.history = start["best_value"], list(start["history"])
    run.report_no, run.seen, run.planned = start["report_no"], start["seen"], start["planned"]
    run.slowest_train = start["slowest_train"]
    run.started -= start["elapsed_s"]  # the budget counts the time it had trained
    rng = start["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and run.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], run.device)
    run.gen.set_state(rng["gen"])
    run.shuffle["rng"] = rng["shuffle"]
    run.batches = _batches(run.n, run.config["batch_size"], run.gen, run.shuffle, skip=run.seen % run.n)


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


def _batches(
    n: int,
    batch_size: int,
    gen: torch.Generator,
    shuffle: dict[str, torch.Tensor] | None = None,
    skip: int = 0,
) -> Iterator[tuple[torch.Tensor | None, int]]:
    """(indices, count) of every batch, epoch after epoch, each epoch shuffled anew.

    A straggler batch of one image breaks BatchNorm: it is skipped (indices None) but still
    counted, so that epochs of data seen stay whole numbers at each epoch's end. ``shuffle``
    keeps the generator's state before each epoch's shuffle; with ``skip`` (images of the epoch
    already trained: a resumed run) the first epoch is that shuffle again, from there on.
    """
    shuffle = {} if shuffle is None else shuffle
    while True:
        if skip:
            now = gen.get_state()
            gen.set_state(shuffle["rng"])
            order = torch.randperm(n, device=gen.device, generator=gen)
            gen.set_state(now)
        else:
            shuffle["rng"] = gen.get_state()
            order = torch.randperm(n, device=gen.device, generator=gen)
        for begin in range(skip, n, batch_size):
            idx = order[begin : begin + batch_size]
            yield (None if len(idx) < 2 and begin else idx), len(idx)
        skip = 0


def _train_span(run: _Run, until: int, deadline: float) -> tuple[float, float, bool]:
    """Train from ``run.seen`` images up to ``until``, stopping where the next batch would end past
    ``deadline``; (mean loss, accuracy, out of time)."""
    split, clock, config = run.data.train, run.clock, run.config
    n = len(split)
    # Sums stay on the device: one host sync per report, not per batch.
    loss_sum = torch.zeros((), device=split.x.device)
    correct = torch.zeros((), device=split.x.device, dtype=torch.long)
    trained = 0
    out_of_time = False
    batch_s = 0.0
    while run.seen < until:
        if trained and clock() + batch_s > deadline:
            # The next batch would end past the deadline: stop before it (but train one, so
            # that a report always stands for some training).
            out_of_time = True
            break
        batch_started = clock()
        idx, count = next(run.batches)
        if idx is None:
            run.seen += count
            continue
        run.schedule.set(run.seen / n)
        x = augment(split.x[idx].float().div_(255), config["augment"], run.gen)
        x = normalise(x, run.task).contiguous(memory_format=run.memory_format)
        y = split.y[idx]
        with run.autocast:
            logits = run.net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=config["label_smoothing"])
        run.optimizer.zero_grad(set_to_none=True)
        if run.scaler is None:
            loss.backward()
            run.optimizer.step()
        else:  # fp16: scaled so that small gradients survive; a step with inf/NaN is skipped
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
        loss_sum += loss.detach() * count
        correct += (logits.argmax(1) == y).sum()
        run.seen += count
        trained += count
        # (On a GPU the clock sees launches, not the work; the report's sync bounds the lag.)
        batch_s = clock() - batch_started
    trained = max(trained, 1)
    return (loss_sum / trained).item(), correct.item() / trained, out_of_time


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


def _time_validation(
    model: nn.Module, split: Split, task: Task, autocast: Any, memory_format: Any, clock: Callable[[], float]
) -> float:
    """Seconds one pass over ``split`` will take, from a pass over its first ``VAL_PROBE`` images.

    Eval-mode forwards change no weights and no random state, so the run trains as if the
    probe had not happened.
    """
    n = min(len(split), VAL_PROBE)
    if n == 0:
        return 0.0
    started = clock()
    evaluate(model, Split(split.x[:n], split.y[:n]), task, autocast, memory_format)
    return (clock() - started) * len(split) / n


def build_task_model(task: Task, config: dict[str, Any]) -> torch.nn.Module:
    """``task``'s model family with ``config``'s knobs, on the CPU."""
    return build_model(task.model, task.num_classes, task.input_shape, **_model_knobs(task, config))


def _model_knobs(task: Task, config: dict[str, Any]) -> dict[str, Any]:
    from hpsearch.trainables.models import MODELS

    return {k: config[k] for k in MODELS[task.model].defaults if k in config}
