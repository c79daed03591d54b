"""The load benchmark: its smoke run counts every trial's run in MLflow, with every epoch, none left open."""

from __future__ import annotations

import pytest

from hpsearch.benchmarks import load
from hpsearch.plumbing.cli import run_main
from tests.test_bench_overhead_scaling import _header_ok, _number, _table


@pytest.mark.slow
def test_load_smoke_counts_every_run_and_epoch(ray_session, tmp_path):
    out = tmp_path / "load.md"
    argv = ["--smoke", "--out", str(out)]
    assert load.main(argv) == 0  # in this process, on the tests' shared Ray (2 CPUs: 0.5 per trial)
    text = out.read_text()
    _header_ok(text, "benchmarks/load.py", argv)
    trials, at_once, epochs = load.SMOKE["trials"], load.SMOKE["concurrent"], load.SMOKE["epochs"]
    counts = {row["count"]: (row["found"], row["expected"]) for row in _table(text, "count")}
    assert counts["the search's trial runs in MLflow"] == (str(trials), str(trials))
    assert counts[f"trial runs with all {epochs} epochs of all {len(load.METRICS)} metrics"] == (
        str(trials),
        str(trials),
    )
    assert counts["trial runs left RUNNING"] == ("0", "0")
    assert counts["the search's run"] == ("FINISHED", "FINISHED")
    assert all(found == expected for found, expected in counts.values())
    assert "Every count is right." in text
    measures = {row["measure"]: row["value"] for row in _table(text, "measure")}
    assert 1 <= _number(measures["most trials at once"]) <= at_once
    assert _number(measures["trials per minute"]) > 0


def test_load_cpus_per_trial_fits_the_trials_asked_for():
    assert load.cpus_per_trial(2, 8) == 0.25
    assert load.cpus_per_trial(16, 8) == 2.0
    # Rounded down, never up: 3 trials of 2/3 CPU must fit in 2 CPUs, and Ray takes whole CPUs above 1.
    assert 3 * load.cpus_per_trial(2, 3) <= 2
    assert load.cpus_per_trial(16, 3) == 5.0


@pytest.mark.parametrize("flag", ["--trials", "--concurrent", "--epochs"])
def test_load_rejects_fewer_than_one(flag, capsys):
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: load.main(["--smoke", flag, "0"]))
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {flag}")
