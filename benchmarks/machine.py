"""The machine a benchmark ran on, and its fp32 ceilings measured now.

Every benchmark measures these in the same run as its own timings, because the
machine is shared and its throughput swings with load: a timing is only
meaningful beside the ceiling measured next to it.
"""

from __future__ import annotations

import os
import platform
import time

import torch

__all__ = ["machine_info", "matmul_gflops", "conv3d_gflops", "best_time", "peak_rss_mb", "markdown_table"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_info() -> dict:
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    try:
        with open("/proc/meminfo") as fh:
            info["memory_gb"] = round(int(fh.readline().split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return info


def best_time(fn, repeats: int = 3, warmup: int = 1) -> float:
    """Fastest of ``repeats`` wall-clock runs of ``fn()`` in seconds (after ``warmup`` runs)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


@torch.inference_mode()
def matmul_gflops(n: int = 2048, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """GEMM throughput (fp32 unless ``dtype``), n x n @ n x n (2 n^3 FLOP), best of 3."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / best_time(lambda: a @ b) / 1e9


@torch.inference_mode()
def conv3d_gflops(channels: int = 64, size: int = 32, device: str = "cpu",
                  dtype: torch.dtype = torch.float32) -> float:
    """Conv3d 3x3x3 forward throughput (fp32 unless ``dtype``), channels -> channels on a size^3 volume, best of 3."""
    conv = torch.nn.Conv3d(channels, channels, 3, padding=1).to(device, dtype)
    x = torch.randn(1, channels, size, size, size, device=device, dtype=dtype)
    flops = 2 * channels * channels * 27 * size**3
    return flops / best_time(lambda: conv(x)) / 1e9


@torch.inference_mode()
def conv2d_gflops(channels: int = 96, height: int = 72, width: int = 88, batch: int = 8,
                  device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """Conv2d 3x3 forward throughput (channels-last) at ``dtype``, the harmonisation flow's main layer, best of 3."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device=device, dtype=dtype)
    x = torch.randn(batch, channels, height, width, device=device, dtype=dtype).contiguous(
        memory_format=torch.channels_last)
    flops = 2 * channels * channels * 9 * height * width * batch
    return flops / best_time(lambda: conv(x)) / 1e9


def peak_rss_mb() -> float:
    """Peak resident memory of this process since it started (MB).

    Linux: VmHWM of /proc/self/status. Not getrusage's ru_maxrss: on Linux that keeps the parent's
    high-water mark across fork + exec, so a worker started by a large process reports the parent's
    peak (measured: a worker of a 2.4 GB parent read 2,396 MB whatever it did).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux (bytes on macOS)


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    info = machine_info()
    print(markdown_table(["key", "value"], [[k, v] for k, v in info.items()]))
    print()
    print(markdown_table(["ceiling", "GFLOP/s"], [["fp32 matmul 2048^3", matmul_gflops()],
                                                  ["fp32 Conv3d 64->64 3^3 on 32^3", conv3d_gflops()]]))


def mean_sd_cell(values, scale: float = 1.0, digits: int = 2) -> str:
    """'mean +- sd' (sample sd over seeds; 0 for one value), fixed decimals."""
    import numpy as np

    v = np.asarray(values, dtype=float) * scale
    return f"{v.mean():.{digits}f} +- {v.std(ddof=1) if len(v) > 1 else 0:.{digits}f}"


def harmonize_longer_option(flow_steps: int) -> list[str]:
    """Overrides of harmonize's cpu-small for its longer-trained option: a restoration net of 30 x the flow's
    steps, trained also on residual non-brain tissue, without the doubt check (bench_harmonize_longer_training)."""
    return [f"restore.steps={30 * flow_steps}", "restore.nonbrain_p=0.3", "restore.doubt=null"]
