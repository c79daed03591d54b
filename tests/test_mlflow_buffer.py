"""The buffering MLflow client: calls kept while the tracking server is down, made in order once it
answers again, and the rest named at the end. A fake clock and a server that is up or down at
the test's word; the last test writes a retrain's final run to a real SQLite store through it.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

import hpsearch.search.mlflow_buffer
from hpsearch.plumbing import tags as tag
from hpsearch.search.exported import ExportedConfig
from hpsearch.search.mlflow_buffer import PROBE_EVERY_S, BufferedMlflow
from hpsearch.search.provenance import DataIdentity
from hpsearch.search.retrain import FinalRunLog

SERVER = "http://tracking.example:5000"
log = logging.getLogger("test_mlflow_buffer")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server(monkeypatch) -> SimpleNamespace:
    """A tracking server that answers while ``up``, and a log of the calls made to it."""
    state = SimpleNamespace(up=True, made=[], tried=[])
    monkeypatch.setattr(hpsearch.search.mlflow_buffer, "reachable", lambda uri, timeout_s=5.0: state.up)

    def call(name: str) -> str:
        state.tried.append(name)
        if not state.up:
            raise ConnectionError("Connection refused")
        state.made.append(name)
        return name

    state.call = call
    return state


def buffered(clock: FakeClock, uri: str = SERVER) -> BufferedMlflow:
    return BufferedMlflow(uri, log=log, work="the test", kept_where="The results are here.", clock=clock)


def messages(caplog) -> list[str]:
    return [r.message for r in caplog.records if r.name == log.name]


def test_calls_made_while_the_server_is_down_are_made_in_order_once_it_answers(server, caplog):
    clock = FakeClock()
    mlflow = buffered(clock)
    with caplog.at_level(logging.WARNING, logger=log.name):
        assert mlflow.call("a", server.call, "a") == "a"
        server.up = False
        assert mlflow.call("b", server.call, "b") is None  # fails, and the server does not answer
        assert mlflow.down
        clock.now += PROBE_EVERY_S / 2
        mlflow.call("c", server.call, "c")  # kept without a try: not time to ask again yet
        assert server.tried == ["a", "b"]
        server.up = True
        clock.now += PROBE_EVERY_S
        assert mlflow.call("d", server.call, "d") == "d"
    assert server.made == ["a", "b", "c", "d"] and not mlflow.down and mlflow.missed == []
    first, back = messages(caplog)
    assert first.startswith(f"MLflow: the server at {SERVER} stopped answering; the test goes on")
    assert back == f"MLflow: the server at {SERVER} answers again after 8 s; logged the 2 calls it missed"


def test_a_server_down_again_mid_replay_keeps_the_rest_in_order(server, caplog):
    clock = FakeClock()
    mlflow = buffered(clock)
    server.up = False
    for name in ("a", "b", "c"):
        mlflow.call(name, server.call, name)
    server.up = True
    clock.now += PROBE_EVERY_S

    def fails_and_downs(name: str) -> None:
        server.up = False  # the server goes again while its missed calls are being made
        server.call(name)

    mlflow.missed.insert(1, ("x", fails_and_downs, ("x",)))
    mlflow.call("d", server.call, "d")
    assert server.made == ["a"]
    assert [what for what, _, _ in mlflow.missed] == ["x", "b", "c", "d"]


def test_what_a_server_that_never_came_back_missed_is_named_at_the_end(server, caplog):
    clock = FakeClock()
    mlflow = buffered(clock)
    server.up = False
    with caplog.at_level(logging.WARNING, logger=log.name):
        for i in range(8):
            mlflow.call(f"call {i}", server.call, i)
        mlflow.probe_now()  # the work's last chance: asked at once, not in PROBE_EVERY_S
        mlflow.call("the last", server.call, "the last")
        mlflow.report_missed()
    assert server.tried == [0]  # the rest kept untried: asked whether it was back, it was not
    *_, last = messages(caplog)
    assert last == (
        f"MLflow: the server at {SERVER} did not answer again: 9 calls not logged (call 0; call 1; "
        "call 2; call 3; call 4; call 5; and 3 more). The results are here."
    )


def test_a_server_that_does_not_answer_at_the_start_turns_tracking_off(server, caplog):
    server.up = False
    mlflow = buffered(FakeClock())
    with caplog.at_level(logging.WARNING, logger=log.name):
        assert not mlflow.answers()
        assert mlflow.call("a", server.call, "a") is None
        assert not mlflow.answers()  # said once
    assert server.tried == []  # no call waits on a dead server
    assert messages(caplog) == [
        f"MLflow: no MLflow server answers at {SERVER}; the test goes on without tracking"
    ]


def test_a_failure_of_an_answering_store_is_one_warning_and_nothing_kept(tmp_path, caplog):
    mlflow = buffered(FakeClock(), f"sqlite:///{tmp_path / 'mlflow.db'}")

    def full() -> None:
        raise RuntimeError("disk full\nsecond line")

    with caplog.at_level(logging.WARNING, logger=log.name):
        assert mlflow.answers() and mlflow.call("writing", full) is None
    assert messages(caplog) == ["MLflow: writing failed: RuntimeError: disk full"]
    assert mlflow.missed == [] and not mlflow.down


def test_a_retrains_epochs_missed_by_its_server_reach_its_final_run(server, tmp_path, monkeypatch):
    # A real SQLite store behind a server that the test takes down and brings back.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setattr(hpsearch.search.mlflow_buffer, "tracking_server", lambda _uri: SERVER)
    clock = FakeClock()
    mlflow = buffered(clock, uri)
    real_log_batch = mlflow.client.log_batch

    def log_batch(*args, **kwargs):
        if not server.up:
            raise ConnectionError("Connection refused")
        return real_log_batch(*args, **kwargs)

    mlflow.client.log_batch = log_batch
    exported = ExportedConfig(task="mnist", config={}, space="spaces/mnist.py", search="s", run_id="r")
    run = FinalRunLog(mlflow=mlflow)
    identity = DataIdentity("0" * 16, "a test's data")
    run.start(exported, {"seed": 3, "lr": 0.1}, device="cpu", train_on_val=False, data=identity)
    run.log_epoch({"epoch": 1, "val_acc": 0.1})
    server.up = False
    run.log_epoch({"epoch": 2, "val_acc": 0.2})
    run.log_epoch({"epoch": 3, "val_acc": 0.3})
    server.up = True
    clock.now += PROBE_EVERY_S
    run.end("FINISHED", metrics={"test_acc": 0.5}, tags={tag.FATE: "completed"})
    client = MlflowClient(uri)
    final = client.get_run(run.run_id)
    history = client.get_metric_history(run.run_id, "val_acc")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (1, 0.1),
        (2, 0.2),
        (3, 0.3),
    ]
    assert final.info.status == "FINISHED" and final.data.metrics["test_acc"] == 0.5
    assert final.data.tags[tag.ROLE] == "final" and final.data.tags[tag.FATE] == "completed"
    assert mlflow.missed == []
