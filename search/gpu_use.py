"""How busy a trial's GPU was between its reports, sampled by MLflow's system-metrics GPU monitor.

MLflow's own system-metrics logging (``log_system_metrics=True``) samples every GPU of a machine
into one run. A search has a run per trial, and its trials run in Ray's worker processes, so
each GPU trial samples its own GPU with MLflow's ``GPUMonitor`` (nvidia-ml-py) in a thread and
sends the means since its last report with the report: ``gpu_util_pct`` (the share of time a
kernel ran) and ``gpu_mem_used_gb`` (the device's memory in use, the CUDA context and other
processes included). Trials packed on one GPU see the same, whole-GPU figures.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

SAMPLE_S = 1.0  # MLflow samples system metrics every 10 s; a report can be shorter than that


class GpuUse:
    """Samples GPU ``index`` (NVML's numbering) every ``interval_s`` until ``stop``."""

    def __init__(self, monitor: Any, index: int, interval_s: float = SAMPLE_S) -> None:
        self.monitor, self.index, self.interval_s = monitor, index, interval_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="gpu-use", daemon=True)

    def start(self) -> GpuUse:
        self._thread.start()
        return self

    def take(self) -> dict[str, float]:
        """The means since the last ``take`` (or the start); nothing if no sample was taken."""
        with self._lock:
            self.monitor.collect_metrics()  # at least one sample, however short the report
            means = self.monitor.aggregate_metrics()
            self.monitor.clear_metrics()
        util = means.get(f"gpu_{self.index}_utilization_percentage")
        used_mb = means.get(f"gpu_{self.index}_memory_usage_megabytes")
        figures = {"gpu_util_pct": util, "gpu_mem_used_gb": None if used_mb is None else used_mb / 1e3}
        return {k: v for k, v in figures.items() if v is not None}

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                self.monitor.collect_metrics()


def watch_gpu(device: torch.device, monitor_factory: Callable[[], Any] | None = None) -> GpuUse | None:
    """A started ``GpuUse`` for the CUDA ``device``; None on the CPU or where NVML cannot run."""
    if device.type != "cuda":
        return None
    try:
        if monitor_factory is None:
            from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor as monitor_factory
        monitor = monitor_factory()
        index = nvml_index(device)
    except Exception as e:  # noqa: BLE001  (no nvidia-ml-py, no driver for NVML: train without it)
        log.warning("no GPU utilisation for this trial: %s", e)
        return None
    return GpuUse(monitor, index).start()


def nvml_index(device: torch.device) -> int:
    """NVML's index of ``device``: CUDA numbers only the GPUs a process sees (Ray sets
    CUDA_VISIBLE_DEVICES per trial), NVML every GPU of the machine; the UUID names both."""
    import pynvml

    uuid = str(torch.cuda.get_device_properties(device).uuid)
    for i in range(pynvml.nvmlDeviceGetCount()):
        nvml_uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
        if (nvml_uuid.decode() if isinstance(nvml_uuid, bytes) else nvml_uuid).removeprefix("GPU-") == uuid:
            return i
    raise RuntimeError(f"NVML lists no GPU with the UUID {uuid}")
