"""The compile benchmark's arithmetic, and its one-line refusal on a machine without a GPU."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hpsearch.benchmarks.compile_gain import Gain, break_even_s

REPO = Path(__file__).resolve().parents[1]


def test_break_even_is_where_the_compiled_run_has_caught_up():
    # 100 img/s eager; 150 compiled after 30 s of compiling: at 90 s both have trained 9,000.
    t = break_even_s(eager_per_s=100, compiled_per_s=150, compile_s=30)
    assert t == pytest.approx(90)
    assert 100 * t == pytest.approx(150 * (t - 30))
    assert break_even_s(100, 100, 5) == math.inf  # no faster: never pays
    assert break_even_s(100, 90, 5) == math.inf
    assert break_even_s(100, 150, None) == math.inf  # compilation failed


def test_a_family_pays_when_it_breaks_even_inside_the_trial():
    gain = Gain("cifar10", "cifar10_cnn", eager_per_s=100, compiled_per_s=150, compile_s=30)
    assert gain.cells(trial_s=600)[-2:] == ["90", "yes"]
    assert gain.cells(trial_s=60)[-1] == "no"
    assert Gain("font", "font_cnn", 100, 150, None).cells(600)[5:] == ["failed", "never", "no"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_without_a_gpu_it_refuses_in_one_line():
    done = subprocess.run(
        [sys.executable, "benchmarks/compile_gain.py", "--tasks", "mnist"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: compile_gain.py measures torch.compile on a GPU, and this machine has no CUDA GPU"
    )
