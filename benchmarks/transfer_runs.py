"""Shared by bench_transfer_quality and bench_transfer_ablation: the stand-in data and one scored run.

sim = ``n`` spectra of the simple simulator (seed 0). For each seed s, real = ``n`` spectra of the rich
stand-in (seed 1 + s: the transfer's unlabelled real data and the upper bound's training set) and
test = ``n`` stand-in spectra of other subjects (seed 101 + s), on which every classifier is tested.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def arguments(validation: bool = False):
    """The benchmarks' command line: (--quick, --seeds; 2 seeds when quick), and --validation when asked
    for (stand-in seeds no reported table uses, for choosing settings): (quick, seeds[, validation])."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    if validation:
        parser.add_argument("--validation", action="store_true",
                            help="real and test stand-in data of other seeds (201 + s, 301 + s)")
    args = parser.parse_args()
    out = (args.quick, 2 if args.quick else args.seeds)
    return (*out, args.validation) if validation else out


def stand_in(n: int, seed: int):
    from medgap.data.spectra import simulate_hsi
    from medgap.io import SpectraSet

    sim = simulate_hsi(n, seed=0)
    real = simulate_hsi(n, realism="rich", seed=1 + seed)
    test = simulate_hsi(n, realism="rich", seed=101 + seed)
    unlabelled = SpectraSet(real.spectra, real.wavelengths, None, None, real.groups)  # never trained on labels
    return sim, real, unlabelled, test


def transfer(sim, unlabelled, overrides: list[str], seed: int):
    """Train a cpu-small transfer with ``overrides`` and apply it to sim; returns (sim->real, seconds, history)."""
    import json

    from medgap.transfer.apply import apply_transfer
    from medgap.transfer.config import TransferConfig
    from medgap.transfer.trainer import train

    cfg = TransferConfig.from_preset("cpu-small", overrides=[*overrides, f"train.seed={seed}"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        t0 = time.perf_counter()
        train(cfg, (sim, unlabelled), folder, progress=False)
        seconds = time.perf_counter() - t0
        history = json.loads((folder / "config.json").read_text())["extras"]["history"]
        return apply_transfer(folder, sim), seconds, history


def score(real, sim, sources: dict, test, seed: int) -> dict:
    """metrics per source (evaluate's 'sources' dict), classifiers tested on ``test``."""
    from medgap.transfer.evaluation import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        return evaluate(real, sim, sources, Path(tmp) / "report", seed=seed, test=test)["sources"]


def mean_sd(values, scale: float = 1.0, digits: int = 3) -> str:
    v = np.asarray(values, dtype=float) * scale
    if np.isnan(v).all():
        return "-"
    return f"{np.nanmean(v):.{digits}g} +- {np.nanstd(v, ddof=1):.2g}" if len(v) > 1 else f"{v[0]:.{digits}g}"
