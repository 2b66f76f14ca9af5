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

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from machine import markdown_table  # noqa: E402

from medgap.transfer.config import TransferConfig  # noqa: E402


def quality(n: int, epochs: int) -> list[list]:
    from medgap.data.spectra import simulate_hsi
    from medgap.io import SpectraSet
    from medgap.transfer.apply import apply_transfer
    from medgap.transfer.data import fit_stats
    from medgap.transfer.evaluation import evaluate
    from medgap.transfer.trainer import train
    import tempfile

    sim, real = simulate_hsi(n, seed=0), simulate_hsi(n, realism="rich", seed=1)
    hidden = SpectraSet(real.spectra, real.wavelengths, None, None, real.groups)  # labels never trained on
    sources, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("cinn", "cinn (bf16)", "unit", "cyclegan"):
            method, precision = name.split(" ")[0], "bf16" if name.endswith("(bf16)") else "fp32"
            cfg = TransferConfig.from_preset("cpu-small", overrides=[f"method={method}", f"hsi.epochs={epochs}",
                                                                     f"train.precision={precision}"])
            folder = Path(tmp) / f"{method}-{precision}"
            t0 = time.perf_counter()
            train(sim, hidden, folder, cfg, progress=False)
            seconds[name] = time.perf_counter() - t0
            sources[name] = apply_transfer(folder, sim)
        # what per-domain standardisation alone (no network) achieves: the cINN's starting point
        s, r = fit_stats(sim), fit_stats(hidden)
        moved = r.denormalize(s.normalize(torch.from_numpy(sim.spectra))).numpy()
        sources["standardisation only"] = SpectraSet(moved, sim.wavelengths, sim.labels, sim.label_names, sim.groups)
        m = evaluate(real, sim, sources, Path(tmp) / "report")
    src = m["sources"]
    rows = []
    for name in ("sim", "cinn", "cinn (bf16)", "unit", "cyclegan", "standardisation only", "real (upper bound)"):
        v = src[name]
        rows.append([name, v.get("mmd2", float("nan")), v.get("mmd2", float("nan")) / src["sim"]["mmd2"],
                     v.get("spectral_difference_mean", float("nan")), 100 * v["balanced_accuracy"], v["auroc"],
                     v["f1_weighted"], seconds.get(name, float("nan"))])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, epochs = (2000, 4) if args.quick else (8000, 20)
    print(f"sim = {n} simple spectra, real = {n} rich 'real-like' spectra (labels hidden from training, used "
          f"only for testing; grouped split by subject). cpu-small, {epochs} epochs each. Train seconds on a "
          "machine shared with other engineers' runs.\n")
    print(markdown_table(["source", "MMD^2 to real", "MMD^2 / MMD^2(sim)", "spectral difference",
                          "RF balanced acc. (%)", "AUROC", "weighted F1", "train seconds"], quality(n, epochs)))


if __name__ == "__main__":
    main()
