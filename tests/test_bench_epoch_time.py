"""benchmarks/epoch_time.py at its smallest, so the benchmark cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_epoch_time_writes_a_row_per_space_with_its_command(tmp_path):
    out = tmp_path / "epoch_time.md"
    command = [sys.executable, "benchmarks/epoch_time.py", "--images", "8", "--threads", "1", "--gpus", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*command, "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "- Command: `python benchmarks/epoch_time.py --images 8" in text and "- Machine: " in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| task")]
    spaces = [p.stem for p in (REPO / "spaces").glob("*.py") if p.name != "__init__.py"]
    assert sorted(row.split(" | ")[0].removeprefix("| ") for row in rows) == sorted(spaces)
    # images/s is a positive number in every row
    assert all(float(row.split(" | ")[4].replace(",", "")) > 0 for row in rows)
