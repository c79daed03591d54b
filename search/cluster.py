"""Starting Ray locally with the GPUs asked for, or joining a running cluster."""

from __future__ import annotations

import logging
import os
import tempfile

import ray
import torch

from trainables.errors import UsageError


def quiet_libraries() -> None:
    """Keep the terminal for the live view: library chatter goes to warnings-only."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # `group=True` of the TPE sampler is "experimental" in Optuna 5; we rely on it knowingly.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in ("mlflow", "alembic", "ray", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)


def start_ray(gpus: float, address: str | None) -> None:
    """Quiet Ray: no dashboard, worker output kept in log files, a short temp dir."""
    if ray.is_initialized():  # a caller (a test, a notebook) already chose the cluster
        _check_gpus(gpus)
        return
    # Ray's sockets live in its temp dir, and Unix socket paths must stay short.
    os.environ.setdefault("RAY_TMPDIR", os.path.join(tempfile.gettempdir(), "ray"))
    # Write the search's state often, so --resume loses little of an interrupted search.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "10")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    quiet = dict(
        include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, configure_logging=True
    )
    if address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UsageError(f"could not join the Ray cluster at {address}: {e}") from e
    else:
        local = torch.cuda.device_count()
        if gpus > local:
            raise UsageError(
                f"--gpus {gpus:g} but this machine has {local} GPU(s); "
                "use --gpus 0 for CPU, or --address to join a cluster"
            )
        # "local": a new Ray for this search, even if another runs on this machine (use --address).
        ray.init(address="local", num_gpus=int(gpus), **quiet)
    _check_gpus(gpus)


def _check_gpus(gpus: float) -> None:
    have = ray.cluster_resources().get("GPU", 0)
    if gpus > have:
        raise UsageError(f"--gpus {gpus:g} but the Ray cluster has {have:g} GPU(s)")
