"""What runs inside one Ray Tune trial: resolve the config, train, report every rung.

It knows nothing of the searcher or the scheduler: it reports through ``tune.report`` once per
epoch (or ``reports_per_epoch`` times) and ASHA decides whether it goes on. Its learning-rate
schedule runs over the search's horizon, not a searched epoch count, so that a trial ASHA stops
at a rung is the prefix of the same trial continued (docs/search-design.md).

A trial that trains to its own end (``completed`` or ``budget``) hands back the weights it kept
(its best report's) as a Tune checkpoint on its last report: ``model.pt`` (a state_dict),
``kept.json`` (task, classes, resolved config, the best report's value) and ``example.pt`` (two
validation images, MLflow's input example). A pruned trial is stopped between reports and
keeps nothing. At the end of the search ``keep_checkpoints`` keeps the best trials' and deletes
the others'.

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
from collections.abc import Iterable
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
                on_epoch=report,
                horizon=horizon,
                started=started,
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
    with tempfile.TemporaryDirectory(prefix="hpsearch-kept-") as folder:
        write_checkpoint(Path(folder), result, task_name, config, data)
        try:
            tune.report(metrics, checkpoint=Checkpoint.from_directory(folder))
            return
        except (RuntimeError, OSError) as e:
            # Tune copies the checkpoint into the search's storage before it takes the report:
            # a node that cannot reach that storage (a local path on another machine) or a full
            # disk loses the model, not the trial's result.
            first = (str(e).strip().splitlines() or [""])[0]
            log.warning("trial keeps no model (%s: %s)", type(e).__name__, first)
    tune.report(metrics)


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
        "metric": "val_acc",  # the loop keeps the report with the best val_acc
        "value": result.best_val_acc,
        "best_epoch": result.best_epoch,  # the report's number (Tune's iteration, MLflow's step)
        "epochs_done": best.get("epochs_done"),  # epochs of data the kept weights have seen
        "horizon_epochs": result.horizon_epochs,
        "stopped": result.stopped,
        "config": config,
    }
    (folder / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")


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

    A ranked trial without a checkpoint (one Tune's budget stopper ended) is left out.
    """
    ranks = {trial_id: rank for rank, trial_id in enumerate(ranked, start=1)}
    kept: list[KeptCheckpoint] = []
    for result in results:
        trial_id = _trial_id(result)
        checkpoints = [c for c, _ in (result.best_checkpoints or [])]
        latest = result.checkpoint  # a trial reports one checkpoint, on its last report
        if trial_id in ranks and latest is not None and _exists(latest):
            kept.append(KeptCheckpoint(trial_id, ranks[trial_id], latest))
            checkpoints = [c for c in checkpoints if c.path != latest.path]
        for checkpoint in checkpoints:
            # Already gone where a resumed search's earlier end deleted it.
            with contextlib.suppress(FileNotFoundError):
                checkpoint.filesystem.delete_dir(checkpoint.path)
    return sorted(kept, key=lambda k: k.rank)


def _exists(checkpoint: Checkpoint) -> bool:
    return checkpoint.filesystem.get_file_info(checkpoint.path).type != pyarrow.fs.FileType.NotFound


def _trial_id(result: Any) -> str:
    from hpsearch.search.summary import trial_id_of  # (pandas: the driver's, not every trial's, import)

    return trial_id_of(result)
