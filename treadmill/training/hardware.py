"""Samples of CPU, memory and GPU use during a run, summarised for the end-of-run report.

CPU and RAM come from `psutil` when it is installed (the `full` extra) and otherwise from the
standard library (the process's CPU time against wall time; its peak resident memory); GPU
memory from torch, GPU utilisation from torch where NVML is available.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any

import torch

__all__ = ["HardwareMonitor"]


def _psutil() -> Any:
    try:
        import psutil
    except ImportError:
        return None
    return psutil


class HardwareMonitor:
    """`sample()` now and then; `get_summary()` gives averages and peaks (None where unmeasured)."""

    def __init__(self) -> None:
        self.psutil = _psutil()
        self.cpu_samples: list[float] = []
        self.ram_samples: list[float] = []  # MiB
        self.gpu_samples: list[float] = []  # utilisation %
        self.gpu_memory_samples: list[dict[str, float]] = []  # MiB used / total
        self._last_cpu = (time.perf_counter(), time.process_time())
        if self.psutil is not None:
            self.psutil.cpu_percent()  # the first call only starts psutil's interval

    def _cpu_percent(self) -> float:
        if self.psutil is not None:
            return float(self.psutil.cpu_percent())
        wall, cpu = time.perf_counter(), time.process_time()
        (last_wall, last_cpu), self._last_cpu = self._last_cpu, (wall, cpu)
        return 100.0 * (cpu - last_cpu) / max(wall - last_wall, 1e-9) / (os.cpu_count() or 1)

    def _ram_mib(self) -> float:
        if self.psutil is not None:
            return float(self.psutil.virtual_memory().used) / 2**20
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return peak / (2**20 if sys.platform == "darwin" else 2**10)

    def sample(self) -> None:
        """Record the current CPU %, RAM, and GPU utilisation and memory."""
        self.cpu_samples.append(self._cpu_percent())
        self.ram_samples.append(self._ram_mib())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            free, total = torch.cuda.mem_get_info()
            self.gpu_memory_samples.append({"used": (total - free) / 2**20, "total": total / 2**20})
            try:
                self.gpu_samples.append(float(torch.cuda.utilization()))
            except Exception:  # noqa: BLE001 - utilisation needs NVML (pynvml); memory is still known
                pass

    def get_summary(self) -> dict[str, Any]:
        """Averages and peaks of what was sampled, and the number of GPUs."""

        def mean(values: list[float]) -> float | None:
            return sum(values) / len(values) if values else None

        return {
            "avg_cpu_percent": mean(self.cpu_samples),
            "max_cpu_percent": max(self.cpu_samples, default=None),
            "avg_ram_mb": mean(self.ram_samples),
            "max_ram_mb": max(self.ram_samples, default=None),
            "avg_gpu_utilization": mean(self.gpu_samples),
            "max_gpu_utilization": max(self.gpu_samples, default=None),
            "num_gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
            "gpu_memory_used_mb": max((s["used"] for s in self.gpu_memory_samples), default=None),
            "gpu_memory_total_mb": self.gpu_memory_samples[-1]["total"] if self.gpu_memory_samples else None,
        }
