"""The MLflow UI check: a search's runs page, served and rendered in headless Chromium."""

from __future__ import annotations

import mlflow
import pytest

from hpsearch.plumbing.ui import runs_url, ui_hint
from hpsearch.reports import ui_check
from hpsearch.search.provenance import experiment_id


def test_the_printed_address_is_the_runs_table_of_the_experiment():
    assert runs_url("http://host:5000/", "7") == "http://host:5000/#/experiments/7/runs"
    local = ui_hint("sqlite:///results/mlflow.db", "3")
    assert "mlflow ui --backend-store-uri sqlite:///results/mlflow.db" in local
    assert local.endswith("http://127.0.0.1:5000/#/experiments/3/runs")
    served = ui_hint("http://user:secret@tracking:5000", "3")
    assert served.endswith("tracking:5000/#/experiments/3/runs") and "secret" not in served


def test_a_page_without_the_runs_table_or_the_search_fails_the_check():
    runs_page = "<div>Training runs</div><td>font-1</td><span>13 matching runs</span>"
    assert ui_check.shows_runs(runs_page, "font-1") == []
    overview = "<a>Training runs</a><h2>Overview</h2><div>Traces 0</div>"  # the GenAI overview
    assert ui_check.shows_runs(overview, "font-1") == ["the runs table", "the search's run 'font-1'"]


@pytest.mark.slow
@pytest.mark.skipif(ui_check.find_browser() is None, reason="needs Chromium (apt install chromium)")
def test_a_user_opening_the_printed_address_sees_the_search_runs(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = experiment_id(client, "font")
    search = "font-20261202-010203"
    parent = client.create_run(
        exp, run_name=search, tags={"hpsearch.role": "search", "hpsearch.search": search}
    )
    for trial in ("a1", "b2"):
        client.create_run(
            exp,
            run_name=trial,
            tags={
                "mlflow.parentRunId": parent.info.run_id,
                "hpsearch.role": "trial",
                "hpsearch.search": search,
                "hpsearch.trial_id": trial,
            },
        )
    shot = tmp_path / "ui.png"
    assert ui_check.main(["--tracking-uri", uri, "--screenshot", str(shot)]) == 0
    assert f"/#/experiments/{exp}/runs shows the runs table with {search}" in capsys.readouterr().out
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
