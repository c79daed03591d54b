"""torch.compile for a run on a GPU where it pays; eager wherever it does not, or fails.

Small models spend much of a GPU step launching kernels; ``torch.compile`` fuses them (airbench's
trick), at the price of a compilation of a few seconds to a minute at the start. That time is
the run's, inside its budget: the loop compiles in a warm-up before its first report (so the
first report's speed, from which the run plans its horizon, is the compiled speed), and the
warm-up's time is on the run's clock. Whether it pays depends on the model family and the GPU:
``benchmarks/compile_gain.py`` measures it, and ``auto`` compiles the families listed
in ``PAYS_ON_CUDA``. On the CPU nothing is compiled: inductor's C++ build takes longer than it
saves these models in a 10-minute trial, and needs a compiler toolchain users may lack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch
from torch import nn

log = logging.getLogger(__name__)

COMPILE_MODES = ("auto", "on", "off")
# Model families whose CUDA runs train faster compiled, compilation included, in the table of
# benchmarks/compile_gain.py (reports/benchmarks/compile_gpu.md). None until a GPU has measured
# them: `auto` compiles none.
PAYS_ON_CUDA: frozenset[str] = frozenset()


def wants_compile(mode: str, device: torch.device, family: str) -> bool:
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if device.type != "cuda" or mode == "off":
        return False
    return mode == "on" or family in PAYS_ON_CUDA


def compile_for_training(
    model: nn.Module, warm_up: Callable[[nn.Module], None]
) -> tuple[nn.Module, float | None]:
    """``model`` compiled (it shares the model's parameters), after ``warm_up`` has run through it
    so that the compilation happens now; and the warm-up's seconds. ``(model, None)`` where
    compiling failed: the run trains eagerly, with one warning."""
    started = time.perf_counter()
    try:
        compiled = torch.compile(model)
        warm_up(compiled)
    except Exception as e:  # noqa: BLE001  (any compiler failure: train eagerly rather than not at all)
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        log.warning("torch.compile failed, this run trains eagerly: %s", first_line)
        torch._dynamo.reset()  # drop what was half-compiled, so the eager model runs as it is
        return model, None
    return compiled, time.perf_counter() - started
