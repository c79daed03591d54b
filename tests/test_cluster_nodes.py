"""A search on a Ray cluster of two nodes (ray.cluster_utils, on loopback): the default storage,
this machine's results dir, is refused; with a shared ``file://`` storage trials run on both
nodes and keep their checkpoints there.

The cluster runs in its own process (this file, run as a script), not beside the tests' shared
Ray (``ray_session``): one driver joins one cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NODES_DIR = "nodes"  # in the shared storage: a file per trial, named by the node it ran on


def noting_node(params, **kwargs):
    """The search's own trial, which first notes the node it runs on in the shared storage."""
    import ray

    from hpsearch.search.trainable import run_trial

    shared = Path(kwargs["settings"].storage_path.removeprefix("file://"))
    (shared / NODES_DIR).mkdir(exist_ok=True)
    (shared / NODES_DIR / ray.get_runtime_context().get_node_id()).touch()
    run_trial(params, **kwargs)


def drive(root: Path) -> dict:
    """Start a two-node cluster, run search/run.py on it twice, say what happened (as JSON)."""
    import ray
    from ray.cluster_utils import Cluster

    from hpsearch.plumbing.errors import UsageError
    from hpsearch.search import run
    from hpsearch.search.tuner import build_tuner

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    common = [
        *("--space", str(root / "tiny.py"), "--gpus", "0", "--address", cluster.address, "--offline"),
        *("--data-dir", str(root / "data"), "--cache-dir", str(root / "cache")),
        *("--results-dir", str(root / "results"), "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"),
        *("--trials", "4", "--max-epochs", "2", "--reports-per-epoch", "1", "--keep-models", "4"),
    ]
    said = {}
    try:
        try:
            run.main([*common, "--name", "local"])
        except UsageError as e:
            said["refused"] = str(e)
        shared = root / "shared"
        # The search's own wiring, its trials noting their node (run.py builds the tuner by name).
        run.build_tuner = partial(build_tuner, trial_fn=noting_node)
        said["code"] = run.main([*common, "--name", "shared", "--storage-path", f"file://{shared}"])
        said["nodes"] = sorted(p.name for p in (shared / NODES_DIR).iterdir())
        said["alive"] = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    finally:
        ray.shutdown()
        cluster.shutdown()
    return said


@pytest.mark.slow
def test_a_two_node_search_refuses_local_storage_and_runs_on_both_nodes_with_shared(tmp_path):
    from search_helpers import write_tiny_space

    from hpsearch.search.trainable import EXAMPLE_FILE, INFO_FILE, MODEL_FILE
    from tests.fake_datasets import write_mnist

    write_mnist(tmp_path / "data", n_train=5200, n_test=100)
    write_tiny_space(tmp_path)
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = json.loads(proc.stdout.strip().splitlines()[-1])

    # Without --storage-path, one line that says what to give; nothing was started.
    assert said["refused"].startswith("this Ray cluster has 2 nodes, and only this one sees "), said
    assert "--storage-path s3://" in said["refused"] and "\n" not in said["refused"]
    assert not (tmp_path / "results" / "local" / "tuner.pkl").exists()

    # With it: every trial finished, on both nodes, and kept its model in the shared storage.
    assert said["code"] == 0 and said["nodes"] == said["alive"] and len(said["alive"]) == 2
    trials = (tmp_path / "results" / "shared" / "trials.csv").read_text().splitlines()
    assert len(trials) == 1 + 4 and all(",completed," in line for line in trials[1:])
    kept = sorted((tmp_path / "shared" / "shared").glob("*/checkpoint_*"))
    assert len(kept) == 4
    assert all(
        sorted(p.name for p in c.iterdir()) == sorted([MODEL_FILE, INFO_FILE, EXAMPLE_FILE]) for c in kept
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print(json.dumps(drive(Path(sys.argv[1]))), flush=True)
