"""Starting Ray locally with the GPUs asked for, or joining a running cluster."""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import tempfile
import time

import ray
import torch
from ray.autoscaler.sdk import request_resources

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
    (with ``address``): whatever the cluster has. Whether the cluster holds the search is
    ``check_cluster``'s to say (a joined one may still be adding its GPU nodes)."""
    if ray.is_initialized():  # a caller (a test, a notebook) already chose the cluster
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


def node_resources() -> list[dict[str, float]]:
    """Each live node's resources: what the cluster holds now (an autoscaler adds nodes later)."""
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def cluster_gpus() -> float:
    return float(sum(node.get("GPU", 0) for node in node_resources()))


def check_cluster(
    settings: SearchSettings,
    gpus: float | None,
    wait_s: float = 0.0,
    *,
    poll_s: float = 1.0,
    progress_s: float = 10.0,
) -> None:
    """Refuse, in one line, a search the cluster cannot hold: fewer GPUs than ``gpus``, or no node
    that holds one trial. With ``wait_s``, first wait up to that long for the GPU nodes (asking
    Ray's autoscaler for them; a cluster without one must get them some other way), saying every
    ``progress_s`` how it stands; the refusal, if they never come, is the same line."""
    started = said = time.monotonic()
    asked = False
    try:
        while True:
            try:
                _check_gpus(gpus)
                check_trials_fit(settings)
                return
            except UsageError:
                waited = time.monotonic() - started
                if waited >= wait_s:
                    raise
            if not asked:
                # An autoscaler adds nodes for work that waits for them; none waits yet.
                request_resources(bundles=_trial_bundles(settings, gpus or 0.0))
                asked = True
            if time.monotonic() - said >= progress_s:
                said = time.monotonic()
                print(
                    f"waiting for GPUs ({waited:.0f} of {wait_s:.0f} s): the cluster has {cluster_gpus():g} "
                    f"on {len(node_resources())} node(s); the search asks for {gpus or 0:g}, "
                    f"{settings.gpus_per_trial:g} on one node for a trial",
                    file=sys.stderr,
                )
            time.sleep(max(0.0, min(poll_s, wait_s - waited)))
    finally:
        if asked:
            request_resources(bundles=[])  # the request stands until replaced: the trials ask now


def _trial_bundles(settings: SearchSettings, gpus: float) -> list[dict[str, float]]:
    # As many trials' shapes as the GPUs asked for hold, so the nodes added fit trials.
    if settings.gpus_per_trial > 0:
        trial = {"CPU": settings.cpus_per_trial, "GPU": settings.gpus_per_trial}
        return [trial] * max(1, math.floor(gpus / settings.gpus_per_trial))
    return [{"GPU": 1.0}] * math.ceil(gpus)


def check_trials_fit(settings: SearchSettings) -> None:
    """A trial that no node can hold would wait forever: refuse it now, in one line."""
    need = {"CPU": settings.cpus_per_trial, "GPU": settings.gpus_per_trial}
    nodes = node_resources()
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
    have = cluster_gpus()
    if gpus is not None and gpus > have:
        raise UsageError(f"--gpus {gpus:g} but the Ray cluster has {have:g} GPU(s)")
