"""Device choice, seeding, progress bars and metric logging."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from medgap.errors import ConfigError

__all__ = ["resolve_device", "seed_everything", "track", "MetricLogger", "is_main_process"]

T = TypeVar("T")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else CPU. Asking for CUDA without a GPU is an error."""
    if isinstance(spec, torch.device):
        return spec
    spec = str(spec).lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device", f"'{spec}' requested but no CUDA GPU is available")
        return torch.device(spec)
    if spec == "cpu":
        return torch.device("cpu")
    raise ConfigError("device", f"must be auto, cpu or cuda[:N], got '{spec}'")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def track(
    iterable: Iterable[T],
    total: int | None = None,
    description: str = "",
    disable: bool = False,
) -> Iterator[T]:
    """Iterate with a rich progress bar (count, elapsed, ETA), shown on rank 0 only."""
    if disable or not is_main_process() or os.environ.get("MEDGAP_NO_PROGRESS"):
        yield from iterable
        return
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in iterable:
            yield item
            progress.advance(task)


class MetricLogger:
    """Append scalars per step to ``<directory>/metrics.csv`` (and TensorBoard if installed).

    New metric names appearing later are added as columns: the file is rewritten then,
    which is cheap for the few thousand rows a training run logs.
    """

    def __init__(self, directory: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled and is_main_process()
        self.path = Path(directory) / "metrics.csv"
        self.rows: list[dict[str, float]] = []
        self.columns: list[str] = ["step"]
        self._tb = None
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # resuming: keep what was logged before
            with open(self.path, newline="") as fh:
                reader = csv.DictReader(fh)
                self.columns = list(reader.fieldnames or ["step"])
                self.rows = [dict(r) for r in reader]
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.path.parent / "tensorboard"))
            except Exception:  # tensorboard is optional
                self._tb = None

    def log(self, step: int, **scalars: float) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: float(v) for k, v in scalars.items()}}
        new_columns = [k for k in row if k not in self.columns]
        self.rows.append(row)
        if new_columns or not self.path.exists():
            self.columns += new_columns
            with open(self.path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.columns)
                writer.writeheader()
                writer.writerows(self.rows)
        else:
            with open(self.path, "a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=self.columns).writerow(row)
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, float(value), step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def check_finite_loss(losses: dict[str, float] | float, step: int, setting: str) -> None:
    """Stop training at the first non-finite loss, naming the step and the setting to lower."""
    import math

    from medgap.errors import TrainingDivergedError

    values = losses if isinstance(losses, dict) else {"loss": losses}
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        name, value = next(iter(bad.items()))
        raise TrainingDivergedError(f"{name} became {value} at step {step}: the training diverged and nothing was "
                                    f"saved; lower {setting} (--set {setting}=...) and train again")


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter entries of ``module`` (only those that train with ``trainable_only``: FrEIA 0.2
    registers its fixed permutations as frozen parameters)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
