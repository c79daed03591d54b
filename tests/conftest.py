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
    # Trials reuse actors: the per-trial start-up cost dominates tiny test trials otherwise.
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
