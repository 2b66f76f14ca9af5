"""Mixed precision for training: products in bfloat16, parameters, optimiser and losses in float32.

``precision="bf16"`` runs matrix products and convolutions under ``torch.autocast`` at bfloat16
(parameters, gradients and optimiser state stay float32; no loss scaling is needed for bfloat16).
On CPUs with AVX512-BF16 oneDNN ran Conv3d ~3x and the cINN's Linear products 1.5-6x faster than
in float32 here (docs/benchmarks.md); on Ampere-or-newer GPUs it is the usual mixed-precision mode.
``"fp32"`` computes everything in float32. ``"auto"`` is bf16 on a device with native bfloat16
products and fp32 elsewhere (no emulated, slower bf16 on an older laptop).

Invertible networks keep their data path in float32 -- a bfloat16 round trip would be exact only
to ~3 digits -- so only their conditioner subnets (and the GAN discriminators) opt in, as
:class:`AutocastSequential` modules switched by :func:`set_precision`. GANs without an exact
inverse (HA-GAN) run their whole step under :func:`autocast`.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Literal

import torch
from torch import nn

from medgap.errors import ConfigError

__all__ = ["Precision", "PRECISIONS", "bf16_supported", "compute_dtype", "autocast", "AutocastSequential",
           "set_precision"]

Precision = Literal["fp32", "bf16", "auto"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")


def _cpu_flags() -> set[str] | None:
    """The CPU feature flags the kernel reports (Linux), or None where /proc/cpuinfo is not readable."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def bf16_supported(device: torch.device | str) -> bool:
    """Whether ``device`` has native bfloat16 products (CPU: AVX512-BF16 or AMX-BF16, as the kernel
    reports them; elsewhere oneDNN's own check)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if not torch.backends.mkldnn.is_available():
        return False
    flags = _cpu_flags()
    if flags is not None:
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)  # non-Linux: torch's own probe
    return bool(check()) if check is not None else False


def compute_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None for fp32).

    bf16 on a device without native bfloat16 products would be emulated -- measured ~450x slower than
    float32 on an AVX2-only CPU -- so it falls back to float32 with a warning instead.
    """
    if precision not in PRECISIONS:
        raise ConfigError("precision", f"must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if bf16_supported(device) else None
    if not bf16_supported(device):
        warnings.warn(f"precision bf16: this {torch.device(device).type} has no native bfloat16 products (CPU: "
                      "AVX512-BF16/AMX); emulated bfloat16 runs hundreds of times slower, so this run uses fp32",
                      stacklevel=2)
        return None
    return torch.bfloat16


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """Context in which products run at ``precision`` (a no-op for fp32)."""
    dtype = compute_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


class AutocastSequential(nn.Sequential):
    """``nn.Sequential`` that runs under autocast at ``compute_dtype`` when set, returning float32.

    ``compute_dtype`` is None (plain float32) until :func:`set_precision` switches it; it is not part
    of the state dict, so weights load the same either way.
    """

    compute_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compute_dtype is None:
            return super().forward(x)
        with torch.autocast(x.device.type, dtype=self.compute_dtype):
            out = super().forward(x)
        return out.float()


def set_precision(module: nn.Module, precision: str, device: torch.device | str) -> None:
    """Switch every :class:`AutocastSequential` (and every module declaring a ``compute_dtype``
    attribute, such as the flows' convolutional conditioners) inside ``module`` to ``precision``."""
    dtype = compute_dtype(precision, device)
    for m in module.modules():
        if isinstance(m, AutocastSequential) or "compute_dtype" in type(m).__dict__:
            m.compute_dtype = dtype
