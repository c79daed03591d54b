"""A GPU trial's utilisation, sampled between reports; a CPU trial, or one without NVML, has none."""

from __future__ import annotations

import itertools
import threading

import torch
from mlflow.system_metrics.metrics.base_metrics_monitor import BaseMetricsMonitor

from hpsearch.search.gpu_use import GpuUse, watch_gpu


class FakeGPUMonitor(BaseMetricsMonitor):
    """MLflow's GPUMonitor's metric names for two GPUs, with values counting up per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.samples = itertools.count(1)
        self.collected = threading.Event()

    def collect_metrics(self) -> None:
        n = next(self.samples)
        for i in range(2):
            self._metrics[f"gpu_{i}_utilization_percentage"].append(10 * n + i)
            self._metrics[f"gpu_{i}_memory_usage_megabytes"].append(1000.0 * n + i)
            self._metrics[f"gpu_{i}_power_usage_watts"].append(300.0)
        self.collected.set()

    def aggregate_metrics(self) -> dict[str, float]:
        return {k: sum(v) / len(v) for k, v in self._metrics.items()}


def test_take_gives_the_means_of_its_gpu_since_the_last_take():
    monitor = FakeGPUMonitor()
    use = GpuUse(monitor, index=1, interval_s=3600)  # no background sample: take's own only
    assert use.take() == {"gpu_util_pct": 11, "gpu_mem_used_gb": 1.001}  # sample 1, GPU 1
    monitor.collect_metrics()  # sample 2, as the thread would; take adds sample 3
    assert use.take() == {"gpu_util_pct": 26, "gpu_mem_used_gb": 2.501}  # means of 2 and 3 only


def test_the_sampling_thread_samples_until_stopped():
    monitor = FakeGPUMonitor()
    use = GpuUse(monitor, index=0, interval_s=0.01).start()
    assert monitor.collected.wait(timeout=30)
    use.stop()
    assert not use._thread.is_alive()
    sampled = len(monitor.metrics["gpu_0_utilization_percentage"])
    assert sampled >= 1
    assert len(monitor.metrics["gpu_0_utilization_percentage"]) == sampled  # nothing after stop


def test_no_watch_on_the_cpu():
    made = []
    assert watch_gpu(torch.device("cpu"), monitor_factory=lambda: made.append(1)) is None
    assert made == []


def test_a_gpu_without_nvml_trains_unwatched(caplog):
    def no_driver():
        raise RuntimeError("Failed to initialize NVML, skip logging GPU metrics: Driver Not Loaded")

    assert watch_gpu(torch.device("cuda"), monitor_factory=no_driver) is None
    assert "no GPU utilisation for this trial: Failed to initialize NVML" in caplog.text
