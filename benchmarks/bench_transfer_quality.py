"""Transfer quality on the simulator benchmark: does the transfer close the gap and help a classifier?

    python benchmarks/bench_transfer_quality.py [--quick]

sim = simple HSI simulation, real = the rich "real-like" simulator (a stand-in for real data: its
labels are hidden from training and used only for testing, grouped split by subject). cINN, UNIT and
CycleGAN at cpu-small (the cINN also trained with bfloat16 mixed precision), plus per-domain
standardisation alone (no network: the cINN's starting point).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from machine import markdown_table  # noqa: E402

from medgap.transfer.config import TransferConfig  # noqa: E402


NAMES = ("sim", "cinn", "cinn (bf16)", "unit", "cyclegan", "standardisation only", "real (upper bound)")


def quality(n: int, epochs: int, seeds: int) -> list[list]:
    """One row per source: metrics as mean +- standard deviation over ``seeds`` training seeds."""
    from medgap.data.spectra import simulate_hsi
    from medgap.io import SpectraSet
    from medgap.transfer.apply import apply_transfer
    from medgap.transfer.data import fit_stats
    from medgap.transfer.evaluation import evaluate
    from medgap.transfer.trainer import train
    import tempfile

    sim, real = simulate_hsi(n, seed=0), simulate_hsi(n, realism="rich", seed=1)
    hidden = SpectraSet(real.spectra, real.wavelengths, None, None, real.groups)  # labels never trained on
    runs, seconds = [], {}
    for seed in range(seeds):
        sources = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name in NAMES[1:5]:
                method, precision = name.split(" ")[0], "bf16" if name.endswith("(bf16)") else "fp32"
                cfg = TransferConfig.from_preset("cpu-small", overrides=[
                    f"method={method}", f"hsi.epochs={epochs}", f"train.precision={precision}", f"seed={seed}"])
                folder = Path(tmp) / f"{method}-{precision}"
                t0 = time.perf_counter()
                train(sim, hidden, folder, cfg, progress=False)
                seconds.setdefault(name, []).append(time.perf_counter() - t0)
                sources[name] = apply_transfer(folder, sim)
            # what per-domain standardisation alone (no network) achieves: the cINN's starting point
            s, r = fit_stats(sim), fit_stats(hidden)
            moved = r.denormalize(s.normalize(torch.from_numpy(sim.spectra))).numpy()
            sources["standardisation only"] = SpectraSet(moved, sim.wavelengths, sim.labels, sim.label_names,
                                                         sim.groups)
            runs.append(evaluate(real, sim, sources, Path(tmp) / "report", seed=seed)["sources"])

    def stat(name: str, key: str, scale: float = 1.0) -> str:
        values = np.array([run[name].get(key, np.nan) for run in runs], dtype=float) * scale
        if np.isnan(values).all():
            return "-"
        return f"{values.mean():.3g} +- {values.std(ddof=1):.2g}" if len(values) > 1 else f"{values[0]:.3g}"

    rows = []
    for name in NAMES:
        ratio = np.array([run[name].get("mmd2", np.nan) / run["sim"]["mmd2"] for run in runs])
        rows.append([name, stat(name, "mmd2"), "-" if np.isnan(ratio).all() else f"{np.nanmean(ratio):.3g}",
                     stat(name, "spectral_difference_mean"), stat(name, "balanced_accuracy", 100),
                     stat(name, "auroc"), stat(name, "f1_weighted"),
                     f"{np.mean(seconds[name]):.0f}" if name in seconds else "-"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per method")
    args = parser.parse_args()
    n, epochs, seeds = (2000, 4, 2) if args.quick else (8000, 20, args.seeds)
    print(f"sim = {n} simple spectra, real = {n} rich 'real-like' spectra (labels hidden from training, used "
          f"only for testing; grouped split by subject). cpu-small, {epochs} epochs each, trained with {seeds} "
          f"seeds: cells are mean +- standard deviation over the seeds. The seed also draws the grouped "
          f"train/test split of the real data and the random forest, so the rows that train nothing (sim, "
          f"standardisation, real) show the evaluation's own spread. Train seconds: mean per run.\n")
    print(markdown_table(["source", "MMD^2 to real", "MMD^2 / MMD^2(sim)", "spectral difference",
                          "RF balanced acc. (%)", "AUROC", "weighted F1", "train seconds"], quality(n, epochs, seeds)))


if __name__ == "__main__":
    main()
