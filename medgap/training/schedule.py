"""The learning-rate schedule the trainers share."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine"]


def warmup_cosine(step: int, total: int, warmup: int = 0) -> float:
    """The factor on the base learning rate at ``step`` (0-based) of ``total``: a linear warm-up over the
    first ``warmup`` steps, then half a cosine from 1 at step 0 to 0 at ``total`` (use with
    ``torch.optim.lr_scheduler.LambdaLR``)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
