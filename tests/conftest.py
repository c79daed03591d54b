"""Shared fixtures: one Ray instance for the whole session (ray.init costs ~5 s)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 CPUs and 4 logical GPUs (resources only: no GPU is needed)."""
    import ray

    os.environ.setdefault("RAY_TMPDIR", "/tmp/ray")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tests that call tune.Tuner without build_tuner's concurrency limit still start up to 8
    # trials at once (with a searcher, Tune's default is one pending trial at a time).
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "8")
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=4,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    yield ray
    ray.shutdown()


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test: tiny batches gain nothing from a thread pool, and on a
    shared 2-core machine its spinning threads fight other processes' (5x slower under load)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
