"""The GPU machine's prepared command: it parses, and what it runs exists (it cannot run here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks/gpu_check.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_gpu_check_runs_files_that_exist():
    text = SCRIPT.read_text()
    named = set(re.findall(r"\b((?:benchmarks|search|tests)/[\w/]+\.py)\b", text))
    assert {"tests/test_cuda.py", "benchmarks/throughput.py", "search/run.py"} <= named
    assert all((REPO / path).is_file() for path in named), named


@pytest.mark.slow
def test_the_cuda_tests_all_carry_the_mark():
    # `pytest -m cuda` is how the script selects them; an unmarked one would never run there.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not cuda", "tests/test_cuda.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 5, done.stdout  # 5: every test deselected
    assert "deselected" in done.stdout
