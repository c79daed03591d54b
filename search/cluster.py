"""Starting Ray locally with the GPUs asked for, or joining a running cluster."""

from __future__ import annotations

import logging
import os
import socket
import tempfile

import ray
import torch

from hpsearch.plumbing.errors import UsageError
from hpsearch.search.settings import SearchSettings


def quiet_libraries() -> None:
    """Keep the terminal for the live view: library chatter goes to warnings-only."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # `group=True` of the TPE sampler is "experimental" in Optuna 5; we rely on it knowingly.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in ("mlflow", "alembic", "ray", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Ray 2.60 warns on every start that it requires a token of its clients: that is what we want.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


def start_ray(gpus: float | None, address: str | None) -> None:
    """Quiet Ray: no dashboard, worker output kept in log files, a short temp dir. ``gpus`` None
    (with ``address``): whatever the cluster has."""
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
        _check_reachable(address)
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
        # Ray 2.60 cannot be bound to loopback (it turns 127.0.0.1 into the node's address), but it
        # requires a token of every client by default, which a local search keeps.
        ray.init(address="local", num_gpus=int(gpus), **quiet)
    _check_gpus(gpus)


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0))


def check_trials_fit(settings: SearchSettings) -> None:
    """A trial that no node can hold would wait forever: refuse it now, in one line."""
    need = {"CPU": settings.cpus_per_trial, "GPU": settings.gpus_per_trial}
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(all(node.get(k, 0) >= v for k, v in need.items() if v > 0) for node in nodes):
        return
    largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
    raise UsageError(
        f"a trial asks for {settings.cpus_per_trial:g} CPU(s) and {settings.gpus_per_trial:g} GPU(s), "
        f"but the largest node has {largest.get('CPU', 0):g} CPU(s) and {largest.get('GPU', 0):g} GPU(s): "
        "lower --cpus-per-trial / --gpus-per-trial"
    )


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    # ray.init retries an unreachable head for minutes: try its port once, quickly, first.
    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address!r} is not HOST:PORT or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UsageError(f"no Ray cluster answers at {address} ({e.strerror or e})") from e


def _check_gpus(gpus: float | None) -> None:
    have = ray.cluster_resources().get("GPU", 0)
    if gpus is not None and gpus > have:
        raise UsageError(f"--gpus {gpus:g} but the Ray cluster has {have:g} GPU(s)")
