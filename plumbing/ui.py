"""Where a user sees a search in MLflow's UI: one home for the command and the address.

MLflow 3's UI opens an experiment on its GenAI overview (traces, an assistant panel), whatever
the experiment's kind: the sidebar's GenAI / Model training toggle lives in the browser's local
storage (mlflow/mlflow#24498). The runs table has an address of its own, ``#/experiments/<id>/runs``,
which opens on "Training runs" for an experiment tagged ``custom_model_development`` (as the
tracker tags every experiment it creates): that is the address to print.
"""

from __future__ import annotations

import shlex

from hpsearch.plumbing.servers import redact, tracking_server

DEFAULT_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


def runs_url(server: str, experiment_id: str) -> str:
    """The runs table of experiment ``experiment_id`` on the UI served at ``server``."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs"


def ui_hint(tracking_uri: str | None, experiment_id: str | None) -> str:
    """One line telling a user how to see the search's runs: the command, then the address."""
    server = tracking_server(tracking_uri)
    if server:  # a tracking server already serves the UI
        where = runs_url(server, experiment_id) if experiment_id else server
        return f"compare runs in MLflow's UI: {redact(where)}"
    command = ["mlflow", "ui"] + (["--backend-store-uri", tracking_uri] if tracking_uri else [])
    where = runs_url(DEFAULT_UI, experiment_id) if experiment_id else DEFAULT_UI
    return f"compare runs in MLflow's UI: {redact(shlex.join(command))}, then open {where}"
