"""--wait-for-gpus: a search joined to an autoscaling cluster waits for its GPU nodes, or refuses.

The cluster is a fake: ``node_resources`` answers as Ray's would while nodes are added, and the
autoscaler's request is recorded, not sent. No test waits more than about a second.
"""

from __future__ import annotations

import time

import pytest

import hpsearch.search.cluster as cluster
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.cluster import check_cluster
from hpsearch.search.settings import SearchSettings

HEAD = {"CPU": 4.0}  # the head node: no GPU
GPU_NODE = {"CPU": 8.0, "GPU": 4.0}
SETTINGS = SearchSettings(gpus_per_trial=1.0, cpus_per_trial=2.0)


@pytest.fixture
def fake_cluster(monkeypatch):
    """A cluster that shows its GPU node from the ``gpu_from``-th look on (never, by default)."""
    state = {"looks": 0, "gpu_from": None, "requests": []}

    def node_resources():
        state["looks"] += 1
        added = state["gpu_from"] is not None and state["looks"] >= state["gpu_from"]
        return [HEAD, GPU_NODE] if added else [HEAD]

    monkeypatch.setattr(cluster, "node_resources", node_resources)
    monkeypatch.setattr(cluster, "request_resources", lambda bundles: state["requests"].append(bundles))
    return state


def refusal(settings: SearchSettings, gpus: float) -> str:
    with pytest.raises(UsageError) as e:
        check_cluster(settings, gpus)
    return str(e.value)


def test_without_a_wait_a_cluster_with_no_gpu_yet_is_refused_at_once(fake_cluster):
    assert refusal(SETTINGS, 4) == "--gpus 4 but the Ray cluster has 0 GPU(s)"
    assert fake_cluster["requests"] == []  # nothing asked of an autoscaler


def test_the_search_goes_on_once_the_gpu_node_shows(fake_cluster, capsys):
    fake_cluster["gpu_from"] = 20  # the 20th look: a dozen polls in
    started = time.monotonic()
    check_cluster(SETTINGS, 4, wait_s=30, poll_s=0.02, progress_s=0.1)
    assert time.monotonic() - started < 5  # it went on as soon as the node came
    # It asked the autoscaler for 4 trials' shapes, and withdrew the request once they came.
    assert fake_cluster["requests"] == [[{"CPU": 2.0, "GPU": 1.0}] * 4, []]
    progress = capsys.readouterr().err.strip().splitlines()
    assert progress and all(line.startswith("waiting for GPUs (") for line in progress)
    assert "the cluster has 0 on 1 node(s); the search asks for 4, 1 on one node" in progress[0]


def test_gpus_that_never_come_are_refused_with_the_same_line(fake_cluster, capsys):
    started = time.monotonic()
    with pytest.raises(UsageError) as e:
        check_cluster(SETTINGS, 4, wait_s=0.5, poll_s=0.05, progress_s=0.2)
    waited = time.monotonic() - started
    assert 0.5 <= waited < 1.5
    assert str(e.value) == refusal(SETTINGS, 4)  # as without a wait
    assert fake_cluster["requests"][0] and fake_cluster["requests"][-1] == []
    assert 1 <= len(capsys.readouterr().err.strip().splitlines()) <= 3  # every 0.2 s of 0.5 s


def test_a_node_too_small_for_one_trial_is_waited_for_then_refused(fake_cluster):
    fake_cluster["gpu_from"] = 1  # 4 GPUs from the start, on a node of 4
    big = SearchSettings(gpus_per_trial=8.0, cpus_per_trial=1.0)
    with pytest.raises(
        UsageError, match="a trial asks for 1 CPU.s. and 8 GPU.s., but the largest node has 8"
    ):
        check_cluster(big, 4, wait_s=0.2, poll_s=0.05)
    # (--gpus 4 is there: only the trial's shape was missing, and that is what was asked for.)
    assert fake_cluster["requests"][0] == [{"CPU": 1.0, "GPU": 8.0}]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--wait-for-gpus", "60", "--gpus", "4"], "--wait-for-gpus waits for a cluster: give --address"),
        (["--wait-for-gpus", "60", "--address", "auto"], "--wait-for-gpus needs --gpus N"),
        (["--wait-for-gpus", "-1"], "--wait-for-gpus must not be negative"),
    ],
)
def test_wait_for_gpus_is_refused_where_it_cannot_wait_for_anything(tmp_path, extra, message):
    from hpsearch.search.run import parse_args, settings_from
    from hpsearch.search.space import load_space
    from tests.search_helpers import write_tiny_space

    space_path = str(write_tiny_space(tmp_path))
    with pytest.raises(UsageError, match=message):
        settings_from(parse_args(["--space", space_path, *extra]), load_space(space_path))
