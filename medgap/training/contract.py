"""The one shape of every method's trainer.

Each method (harmonize, transfer, synthesize) trains through one function of the same shape::

    train(config, data, out, *, device="auto", resume=True, overwrite=False, progress=True) -> TrainResult

* ``config``: the method's configuration; its ``seed`` is part of it, so the model folder records it.
* ``data``: what the method trains on, prepared by the method's own loader (``None`` where the
  method has a default data set).
* ``out``: the model folder. Beside it lives the run folder ``OUT.run/`` (:func:`run_folder`):
  ``run.json`` (the run's settings and a fingerprint of its data), ``lock``, ``checkpoints/``,
  ``metrics.csv`` (and ``tensorboard/``). A rerun with ``resume`` continues the checkpoints when
  settings and data are those of the run, and otherwise says what changed
  (:mod:`medgap.training.rundir`); ``resume=False`` (``--no-resume``) starts afresh.
* Returns a :class:`TrainResult`.

Like Lightning's ``Trainer.fit(model, data)`` and MONAI's ``SupervisedTrainer``, the line is drawn
between what every method shares -- the run folder, resume rule, checkpoints, metrics, distributed
set-up, model folder -- and the step, which is the method's own. Neither library is used for the loop
itself: the three steps are unlike (a flow's likelihood, a cINN with two optimisers and adversarial
chunks, a GAN with four networks and a slab-wise generator) and each needs bit-exact resume with
its RNG state, which our checkpoints give.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from medgap.training.checkpoint import CheckpointManager
from medgap.training.rundir import RunFolder

__all__ = ["TrainResult", "run_folder", "make_run", "checkpoints"]

RUN_SUFFIX = ".run"
CHECKPOINTS = "checkpoints"
# what a fresh start (--no-resume) clears in a run folder
RUN_ENTRIES = (CHECKPOINTS, "metrics.csv", "tensorboard")


@dataclass
class TrainResult:
    """What a training did.

    Attributes:
        model: the model folder written (None when a caller trains without one).
        run: the run folder (checkpoints, metrics.csv, run.json).
        steps: optimiser steps done in total (including those of a resumed run).
        resumed_from: the step the run resumed from (0 for a fresh run).
        seconds: wall-clock seconds of this call's training.
        metrics: final values (losses, likelihoods) and the method's own summary.
    """

    model: Path | None
    run: Path
    steps: int
    resumed_from: int
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model"] = None if self.model is None else str(self.model)
        out["run"] = str(self.run)
        return out


def run_folder(out: str | Path) -> Path:
    """The run folder beside the model folder ``out``: ``OUT.run``."""
    out = Path(out)
    return out.with_name(out.name + RUN_SUFFIX)


def make_run(out: str | Path, method: str, settings: dict, data_sha256: str, *, resume: bool, ctx,
             prepared: Iterable[str] = (), path: str | Path | None = None,
             upgrade: Callable[[dict], dict] | None = None) -> RunFolder:
    """The run folder of the model folder ``out`` (or ``path``) for one training of ``method``: use it as
    ``with make_run(...) as run:`` (checked, locked and recorded on entry, unlocked on exit). ``upgrade``:
    the config class's ``upgrade_keys``, so a run recorded with keys of an earlier version resumes."""
    return RunFolder(Path(path) if path is not None else run_folder(out), method, settings, data_sha256,
                     resume=resume, is_main=ctx.is_main, barrier=ctx.barrier, clear=RUN_ENTRIES, prepared=prepared,
                     upgrade=upgrade)


def checkpoints(run: RunFolder, keep_last: int = 2) -> CheckpointManager:
    """The run's checkpoints: ``RUN/checkpoints/step-N``."""
    return CheckpointManager(run.path / CHECKPOINTS, keep_last=keep_last)
