"""What runs inside one Ray Tune trial: resolve the config, train, report every rung.

It knows nothing of the searcher or the scheduler: it reports through ``tune.report`` once per
epoch (or ``reports_per_epoch`` times) and ASHA decides whether it goes on. Its learning-rate
schedule runs over the search's horizon, not a searched epoch count, so that a trial ASHA stops
at a rung is the prefix of the same trial continued (docs/search-design.md).

A trial that trains to its own end (``completed`` or ``budget``) hands back the weights it kept
(its best report's by the space's metric) as a Tune checkpoint on its last report:
``model.pt`` (a state_dict), ``kept.json`` (task, classes, resolved config, the metric and the
best report's value) and ``example.pt`` (two validation images, MLflow's input example). A
pruned trial is stopped between reports and keeps nothing. At the end of the search
``keep_checkpoints`` keeps the best trials' and deletes the others'.

A search that retries failed trials (``max_failures`` > 0) also checkpoints its other reports:
``resume.pt``, the loop's whole state at that report (trainables/loop.py ``on_state``). A trial
that fails (its worker killed, its node preempted) starts again from its latest one, on any
node, and goes on exactly as it would have, its budget counting the time it had trained; Tune
keeps one checkpoint per trial, so these go as the next one comes.

With ``reuse_actors`` a worker process runs many trials one after another: everything a trial
sets (torch threads, seeds, CUDA memory) is set at its start or released at its end, and its
checkpoint is written to a temporary folder that is gone once Tune has copied it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
import torch
from ray import tune
from ray.tune import Checkpoint, ResultGrid

from hpsearch.search.gpu_use import watch_gpu
from hpsearch.search.settings import SearchSettings
from hpsearch.trainables.data.splits import Splits
from hpsearch.trainables.fates import FINISHED_FATES
from hpsearch.trainables.loop import Horizon, TrainResult, build_task_model, train
from hpsearch.trainables.memory import HEADROOM, MemoryEstimate, estimate_memory, fits, size
from hpsearch.trainables.tasks import get_task

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"  # the model family's state_dict: torch.load(..., weights_only=True)
INFO_FILE = "kept.json"
RESUME_FILE = "resume.pt"  # a mid-trial checkpoint: what train(start=...) goes on from
EXAMPLE_FILE = "example.pt"  # uint8 [2, C, H, W]
EXAMPLE_IMAGES = 2  # more than one, so that an exported graph keeps its batch size free


def run_trial(
    params: dict[str, Any],
    *,
    data: Splits,
    task_name: str,
    baseline: dict[str, Any],
    settings: SearchSettings,
) -> None:
    """Ray Tune function trainable; ``data`` arrives once through the object store."""
    started = time.perf_counter()  # the trial's budget counts its own set-up too
    torch.set_num_threads(max(1, int(settings.cpus_per_trial)))
    task = get_task(task_name)
    config = settings.trial_config(task, baseline, params)
    # (In that order: outside a Ray worker, get_gpu_ids would start a Ray instance of its own.)
    device = torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
    horizon = Horizon(settings.max_epochs, settings.reports_per_epoch, fit_budget=True)
    last: list[dict[str, Any]] = []
    # (Asked only where the search checkpoints: outside Tune, get_checkpoint warns.)
    checkpoint = tune.get_checkpoint() if settings.max_failures else None
    if checkpoint is not None and not holds(checkpoint, RESUME_FILE):
        return  # its kept model's: the trial had made its last report (a search resumed just after)
    start = read_state(checkpoint) if checkpoint is not None else None
    state: list[dict[str, Any]] = []  # the loop's state at the report being made
    saving = [settings.max_failures > 0]  # until the storage refuses a checkpoint

    def keep_state(at_report: dict[str, Any]) -> None:
        state[:] = [at_report]

    def write_state(folder: Path) -> None:
        torch.save(state.pop(), folder / RESUME_FILE)

    # What the trial really ran on (the tracker tags its run with it), not the resource asked for.
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    need = estimate_memory(build_task_model(task, config), config, data)
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        if not fits(need, free):  # before its data copy: a trial that cannot fit fails at once
            raise TrialOutOfMemory(does_not_fit_message(device_name, need, free, total, config))

    gpu_use = watch_gpu(device)

    def report(metrics: dict[str, Any]) -> None:
        metrics = {**metrics, "device": device_name, "mem_estimate_gb": round(need.total / 2**30, 4)}
        if gpu_use is not None:
            metrics.update(gpu_use.take())
        # The loop restores the best report's weights only after its last report: hold that
        # report back and send it with the weights once train() has returned.
        if metrics.get("stopped") in FINISHED_FATES:
            last.append(metrics)
        elif state and saving[0]:
            saving[0] = report_with_checkpoint(metrics, write_state)
        else:
            tune.report(metrics)

    try:
        try:
            result = train(
                task,
                config,
                data.to(device),
                device=device,
                budget_s=settings.trial_budget_s,
                compile_mode=settings.compile,
                metric=settings.metric,  # the trial keeps its best report's weights by the space's metric
                mode=settings.mode,
                on_epoch=report,
                horizon=horizon,
                started=started,
                start=start,
                on_state=keep_state if saving[0] else None,
            )
        except torch.cuda.OutOfMemoryError as e:
            # One line with the numbers, as the trial's error (its run's `hpsearch.error`):
            # the search goes on with the other trials.
            raise TrialOutOfMemory(out_of_memory_message(device_name, need, config)) from e
        if last:
            report_with_model(last[-1], result, task_name, config, data)
    finally:
        if gpu_use is not None:
            gpu_use.stop()
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the next trial in this reused worker starts with the memory free


class TrialOutOfMemory(RuntimeError):
    """A trial that did not fit its device's memory; its message says by how much and what to try."""


def out_of_memory_message(device_name: str, need: MemoryEstimate, config: dict[str, Any]) -> str:
    """ "out of memory on <device>: ..." with the trial's estimate, its peak and the device's total."""
    parts = [f"it was estimated to need {need.describe()}"]
    if device_name != "cpu":  # a GPU's name
        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        peak = torch.cuda.max_memory_allocated()
        parts.append(f"its tensors peaked at {size(peak)} of the GPU's {size(total)}")
    return f"out of memory on {device_name}: " + ", ".join(parts) + _what_to_try(config)


def does_not_fit_message(
    device_name: str, need: MemoryEstimate, free: int, total: int, config: dict[str, Any]
) -> str:
    return (
        f"out of memory on {device_name}: not started, it would need {need.describe()} with "
        f"{HEADROOM:g}x headroom, and {size(free)} of the GPU's {size(total)} is free" + _what_to_try(config)
    )


def _what_to_try(config: dict[str, Any]) -> str:
    return f"; try a smaller batch_size than {config['batch_size']}, or fewer trials per GPU"


def report_with_model(
    metrics: dict[str, Any], result: TrainResult, task_name: str, config: dict[str, Any], data: Splits
) -> None:
    """Report ``metrics`` with the trial's kept weights as its checkpoint."""
    report_with_checkpoint(metrics, lambda folder: write_checkpoint(folder, result, task_name, config, data))


def report_with_checkpoint(metrics: dict[str, Any], write: Callable[[Path], None]) -> bool:
    """Report ``metrics`` with the checkpoint that ``write`` puts in a folder; False if the
    search's storage refused it (the report then goes without)."""
    with tempfile.TemporaryDirectory(prefix="hpsearch-checkpoint-") as folder:
        write(Path(folder))
        try:
            tune.report(metrics, checkpoint=Checkpoint.from_directory(folder))
            return True
        except (RuntimeError, OSError) as e:
            # Tune copies the checkpoint into the search's storage before it takes the report:
            # a node that cannot reach that storage (a local path on another machine) or a full
            # disk loses the checkpoint, not the trial's result.
            first = (str(e).strip().splitlines() or [""])[0]
            log.warning("trial keeps no checkpoint (%s: %s)", type(e).__name__, first)
    tune.report(metrics)
    return False


def write_checkpoint(
    folder: Path, result: TrainResult, task_name: str, config: dict[str, Any], data: Splits
) -> None:
    """The kept weights, on the CPU, and what it takes to use them."""
    state = {k: v.detach().to("cpu", copy=True) for k, v in result.model.state_dict().items()}
    torch.save(state, folder / MODEL_FILE)
    torch.save(data.val.x[:EXAMPLE_IMAGES].to("cpu").clone(), folder / EXAMPLE_FILE)
    best = next((r for r in result.history if r["epoch"] == result.best_epoch), {})
    info = {
        "task": task_name,
        "classes": list(data.classes),
        "metric": result.metric,  # what chose the kept report (the space's metric, in its mode)
        "value": result.best_value,
        "val_acc": result.best_val_acc,
        "best_epoch": result.best_epoch,  # the report's number (Tune's iteration, MLflow's step)
        "epochs_done": best.get("epochs_done"),  # epochs of data the kept weights have seen
        "horizon_epochs": result.horizon_epochs,
        "stopped": result.stopped,
        "config": config,
    }
    (folder / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")


def read_state(checkpoint: Checkpoint) -> dict[str, Any]:
    """The loop's state that a mid-trial checkpoint holds, on the CPU (``train`` moves it)."""
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / RESUME_FILE, map_location="cpu", weights_only=True)


def read_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], torch.Tensor]:
    """(state_dict, info, example images) from a checkpoint folder that ``write_checkpoint`` wrote."""
    folder = Path(folder)
    state = torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True)
    example = torch.load(folder / EXAMPLE_FILE, map_location="cpu", weights_only=True)
    return state, json.loads((folder / INFO_FILE).read_text()), example


@dataclass(frozen=True)
class KeptCheckpoint:
    trial_id: str
    rank: int  # 1 = the search's best finished trial
    checkpoint: Checkpoint


def keep_checkpoints(results: ResultGrid | Iterable[Any], ranked: Iterable[str]) -> list[KeptCheckpoint]:
    """The checkpoints of the trials ``ranked`` (trial ids, best first), in that order; every
    other trial's checkpoints are deleted, so a results folder holds K models, not one per trial.

    A ranked trial without a checkpoint (one Tune's budget stopper ended) is left out. A trial
    cut short by the search's stop (Ctrl-C, its time budget) keeps its latest state, which
    ``--resume`` goes on from.
    """
    ranks = {trial_id: rank for rank, trial_id in enumerate(ranked, start=1)}
    kept: list[KeptCheckpoint] = []
    for result in results:
        trial_id = _trial_id(result)
        checkpoints = [c for c, _ in (result.best_checkpoints or [])]
        # A finished trial's last checkpoint holds its kept model; a mid-trial one only a state.
        latest = result.checkpoint
        if trial_id in ranks and latest is not None and holds(latest, INFO_FILE):
            kept.append(KeptCheckpoint(trial_id, ranks[trial_id], latest))
            checkpoints = [c for c in checkpoints if c.path != latest.path]
        elif latest is not None and holds(latest, RESUME_FILE) and _not_over(result):
            checkpoints = [c for c in checkpoints if c.path != latest.path]
        for checkpoint in checkpoints:
            # Already gone where a resumed search's earlier end deleted it.
            with contextlib.suppress(FileNotFoundError):
                checkpoint.filesystem.delete_dir(checkpoint.path)
    return sorted(kept, key=lambda k: k.rank)


def _not_over(result: Any) -> bool:
    # Tune marks `done` the last result of a trial that returned or that the scheduler stopped.
    return result.error is None and not (result.metrics or {}).get("done")


def holds(checkpoint: Checkpoint, name: str) -> bool:
    """Whether ``checkpoint`` holds the file ``name`` (``INFO_FILE``: a finished trial's kept model)."""
    path = f"{checkpoint.path.rstrip('/')}/{name}"
    return checkpoint.filesystem.get_file_info(path).type == pyarrow.fs.FileType.File


def _trial_id(result: Any) -> str:
    from hpsearch.search.summary import trial_id_of  # (pandas: the driver's, not every trial's, import)

    return trial_id_of(result)
