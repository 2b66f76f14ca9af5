"""How many CPU threads a medgap run uses: decided here, once, for every command.

PyTorch starts one thread per visible core by default. On a machine shared by several runs (or in a
container whose CPU quota is lower than its visible cores) that oversubscribes the cores: three
2-thread runs on 2 cores made each 10-30x slower (measured). The rule, first match wins:

1. ``--threads N`` (Python: ``configure_threads(N)``);
2. ``OMP_NUM_THREADS`` when set (the standard knob of OpenMP/MKL, honoured by PyTorch too);
3. the CPUs this process may use -- its CPU affinity and its cgroup CPU quota (``cpu.max`` in
   cgroup v2, ``cpu.cfs_quota_us`` in v1), whichever is smaller -- divided by the processes
   ``torchrun`` starts on this machine (``LOCAL_WORLD_SIZE``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from medgap.errors import ConfigError

__all__ = ["available_cpus", "choose_threads", "configure_threads"]


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota, or None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # v2: "max 100000" or "200000 100000"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())  # v1: -1 = unlimited
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may use: affinity and cgroup quota, the smaller (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def choose_threads(requested: int | None = None, environ: dict | None = None,
                   cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The number of threads by the rule in the module text."""
    env = os.environ if environ is None else environ
    if requested is not None:
        if requested < 1:
            raise ConfigError("threads", f"must be >= 1, got {requested}")
        return int(requested)
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        return int(omp)
    local = env.get("LOCAL_WORLD_SIZE", "1")
    processes = int(local) if local.isdigit() and int(local) >= 1 else 1
    return max(1, available_cpus(cgroup_root) // processes)


def configure_threads(requested: int | None = None) -> int:
    """Set PyTorch's intra-op threads by :func:`choose_threads`; returns the number."""
    n = choose_threads(requested)
    torch.set_num_threads(n)
    return n
