"""Runs a search in its own process, for tests that need their own Ray (a two-node cluster)
or a driver they can kill. Usage: python tests/search_driver.py cluster|steady SPACE RESULTS_DIR"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for search_helpers, run as a script

from search_helpers import placement_trial, steady_trial, tiny_data  # noqa: E402

from hpsearch.search.space import load_space  # noqa: E402
from hpsearch.search.tuner import SearchSettings, build_tuner  # noqa: E402


def main(mode: str, space_path: str, results_dir: str) -> None:
    space = load_space(space_path)
    if mode == "cluster":
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        settings = SearchSettings(trials=4, max_epochs=1, cpus_per_trial=1)
        results = build_tuner(
            space, settings, tiny_data(), Path(results_dir) / "cluster", trial_fn=placement_trial
        ).fit()
        print(json.dumps(sorted({r.metrics["node"] for r in results})), flush=True)
        ray.shutdown()
        cluster.shutdown()
    else:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        settings = SearchSettings(trials=6, max_epochs=3, cpus_per_trial=1)
        build_tuner(space, settings, tiny_data(), Path(results_dir) / "steady", trial_fn=steady_trial).fit()


if __name__ == "__main__":
    main(*sys.argv[1:])
