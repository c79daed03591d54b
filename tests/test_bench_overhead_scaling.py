"""The overhead and scaling benchmarks: their smoke runs write whole reports with sensible figures."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hpsearch.benchmarks import overhead, scaling
from hpsearch.plumbing.cli import run_main

ROOT = Path(__file__).resolve().parents[1]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(text: str, first_column: str) -> list[dict[str, str]]:
    """The rows of the Markdown table whose first column is ``first_column``, by column name."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    columns = _cells(lines[start])
    rows = []
    for line in lines[start + 2 :]:  # past the |---| line
        if not line.startswith("|"):
            break
        rows.append(dict(zip(columns, _cells(line), strict=True)))
    return rows


def _number(cell: str) -> float:
    """The leading number of a cell: '4.96 s', '27.3 ms (p90 36.8 ms)', '1,024', '75.50%', '1.00x'."""
    return float(cell.split()[0].replace(",", "").rstrip("%x"))


def _header_ok(text: str, script: str, argv: list[str]) -> None:
    assert f"- Command: `{shlex.join(['python', script, *argv])}`" in text
    machine = next(line for line in text.splitlines() if line.startswith("- Machine: "))
    assert "cores" in machine and "ray " in machine and "mlflow " in machine
    assert "SMOKE RUN" in text  # a smoke report can never pass for a measurement


@pytest.mark.slow
def test_overhead_smoke_writes_report_with_positive_costs(ray_session, tmp_path):
    out = tmp_path / "overhead.md"
    argv = ["--smoke", "--out", str(out)]
    assert overhead.main(argv) == 0  # in this process, on the tests' shared Ray
    text = out.read_text()
    _header_ok(text, "benchmarks/overhead.py", argv)
    runs = _table(text, "run")
    assert [r["run"] for r in runs] == ["1", "2", "3", "4", "5"]
    for run in runs:
        assert _number(run["per trial"]) > 0 and _number(run["report"]) > 0
        # The smoke's 2 trials, one after another (runs 1-4) in one reused worker; two at once (run 5).
        assert run["worker processes"] == ("2" if run["run"] == "5" else "1")
    parts = {row["part"]: row["cost"] for row in _table(text, "part")}
    for part in ("a trial's start and end", "one report", "MLflow alone", "MLflow: a new SQLite store"):
        costs = [_number(cost) for name, cost in parts.items() if name.startswith(part)]
        assert costs and all(c > 0 for c in costs), part
    assert "not measured (Ray was already running)" in parts["Ray start (once per search)"]
    shares = _table(text, "trial")
    assert len(shares) == 3  # quick preset as trained, its whole budget, the 10-minute budget
    for row in shares:
        assert 0 < _number(row["framework share"]) < 100 and 0 < _number(row["MLflow share"]) < 100
    assert (tmp_path / "overhead.png").stat().st_size > 0


@pytest.mark.slow
def test_scaling_smoke_writes_report_for_three_setups(tmp_path):
    out = tmp_path / "scaling.md"
    argv = ["--smoke", "--out", str(out)]
    # Its own process: it starts three Ray clusters of its own, which the tests' shared Ray forbids.
    run = subprocess.run(
        [sys.executable, "benchmarks/scaling.py", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    text = out.read_text()
    _header_ok(text, "benchmarks/scaling.py", argv)
    rows = _table(text, "set-up")
    assert [r["set-up"] for r in rows] == ["1 worker", "2 workers", "2 nodes x 1 worker"]
    assert [r["node CPUs"] for r in rows] == ["1", "2", "1 + 1"]
    for row, cpus in zip(rows, (1, 2, 2), strict=True):
        assert _number(row["trials"]) == 2 and 1 <= _number(row["most at once"]) <= cpus
        assert _number(row["trials per hour"]) > 0 and _number(row["training per trial"]) > 0
        assert 0 < _number(row["workers training"]) <= 100
    # The speed-up is trials per hour against the 1-worker set-up's (rounded in the table).
    one = _number(rows[0]["trials per hour"])
    assert rows[0]["speed-up"] == "1.00x"
    for row in rows[1:]:
        assert _number(row["speed-up"]) == pytest.approx(_number(row["trials per hour"]) / one, abs=0.01)
    assert (tmp_path / "scaling.png").stat().st_size > 0


@pytest.mark.parametrize("script", [overhead, scaling], ids=["overhead", "scaling"])
def test_benchmark_without_mnist_fails_in_one_line(script, tmp_path, capsys):
    out = tmp_path / "report.md"
    argv = [
        "--data-dir",
        str(tmp_path / "nowhere"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
    ]
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: script.main(argv))
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: MNIST not found under {tmp_path / 'nowhere' / 'MNIST' / 'raw'}")
    assert not out.exists()  # it failed before measuring anything


@pytest.mark.parametrize("script", [overhead, scaling], ids=["overhead", "scaling"])
def test_benchmark_rejects_too_few_trials(script, capsys):
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: script.main(["--smoke", "--trials", "1"]))
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("error: --trials")
