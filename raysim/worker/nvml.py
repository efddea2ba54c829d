"""What the driver sees of a GPU (NVML), beside what PyTorch's allocator reports.

PyTorch's peaks leave out the CUDA context and the communication buffers; NVML's
per-process used memory includes them, and its utilisation shows how busy the
shared card is. No NVML (CPU machines, some containers): no figures, no error.
"""

from __future__ import annotations

import os


def physical_gpu_index(torch_index: int) -> int:
    """NVML counts all GPUs; torch counts those in CUDA_VISIBLE_DEVICES (Ray sets it)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = [part.strip() for part in visible.split(",") if part.strip()]
    if torch_index < len(ids) and ids[torch_index].isdigit():
        return int(ids[torch_index])
    return torch_index


def nvml_metrics(torch_index: int, pid: int | None = None) -> dict[str, int]:
    """This process's used GPU memory and the card's utilisation now ({} without NVML)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no library, no driver, or no permission: NVML is optional
        return {}
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(physical_gpu_index(torch_index))
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        figures = {
            "nvml_device_used_bytes": int(memory.used),
            "nvml_device_total_bytes": int(memory.total),
            "nvml_gpu_utilization_pct": int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
        }
        wanted = os.getpid() if pid is None else pid
        for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if process.pid == wanted and process.usedGpuMemory is not None:
                figures["nvml_process_used_bytes"] = int(process.usedGpuMemory)
        return figures
    except pynvml.NVMLError:
        return {}
    finally:
        pynvml.nvmlShutdown()
