"""Why the longer-trained option's gate opens where the default's stays shut: the gate's unit, r0.

    python benchmarks/bench_harmonize_gate_units.py [--quick]

The default's restoration net is applied with weight ``w`` set by the size of its correction (mean
absolute change over the foreground) in units of ``r0``, its correction on the target's own training
slices: 0 up to 2 r0, 1 from 4 r0. bench_harmonize_out_of_family found the longer-trained option
(``machine.harmonize_longer_option``) below Nyul on out-of-family changes of the TEST volume S1 where the
default ties. This benchmark trains both nets for one seed (as there: cpu-small, 300 flow steps) and
prints, per change and for the UNCHANGED subject, each net's correction size in absolute terms and in
r0, its gate weight and what the gated correction adds to Nyul's result (PSNR in the brain, dB), on S1
(TEST) and Colin 27 (VALIDATION). It measures; nothing here was used to choose a setting.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from machine import harmonize_longer_option, markdown_table

from medgap.harmonize.api import Harmonizer
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.evaluate import heldout_sets
from medgap.harmonize.restore import correction_size
from medgap.harmonize.simulate import COMBINED_DOMAINS, HARD_DOMAINS, OUT_OF_FAMILY, OUT_OF_FAMILY_COMBINED, simulate
from medgap.harmonize.train import train
from medgap.metrics import psnr

# the order of bench_harmonize_out_of_family: the j-th change is drawn with seed 1 + j, as there for seed 0
DOMAINS = OUT_OF_FAMILY + OUT_OF_FAMILY_COMBINED + ["gamma1.3"] + HARD_DOMAINS + COMBINED_DOMAINS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer steps and slices, four changes")
    args = parser.parse_args()
    steps, every = (60, 6) if args.quick else (300, 2)
    domains = DOMAINS[:4] if args.quick else DOMAINS
    settings = [f"train.steps={steps}", "train.seed=0", "train.checkpoint_every=100000"]
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for name, extra in (("default", []), ("option", harmonize_longer_option(steps))):
            train(HarmonizeConfig.from_preset("cpu-small", overrides=settings + extra), None, Path(tmp) / name,
                  progress=False)
            models[name] = Harmonizer.load(Path(tmp) / name, device="cpu")
        r0 = {n: m.info["extras"]["train"]["restore"]["target_correction"] for n, m in models.items()}
        sets = heldout_sets(models["default"].cfg.flow.image_size, every, 1)
        print(f"cpu-small, {steps} flow steps, seed 0. Default: {10 * steps} restoration steps (r0 {r0['default']:.4f}); "
              f"option: {' '.join(harmonize_longer_option(steps))} (r0 {r0['option']:.4f}). Gate: w = 0 up to 2 r0, "
              "1 from 4 r0. Cells: correction size (in r0), w, gated result minus Nyul's (dB).")
        for part, title in (("test_volume", "TEST: S1's volume, every second slice, each randomly moved"),
                            ("validation", "VALIDATION: Colin 27")):
            truth, brain, pos, _ = sets[part]

            def score(x):
                return float(np.mean([psnr(a, t, mask=m) for a, t, m in zip(x[:, 0], truth[:, 0], brain[:, 0])]))

            rows = []
            for j, domain in enumerate(["unchanged"] + domains):
                xs = truth if domain == "unchanged" else simulate(truth, domain, seed=j)
                row = [domain]
                for name, h in models.items():
                    base = h.harmonize_slices(xs, pos, "nyul")
                    _, size = correction_size(h.restorer, base, h.cfg.harmonize.foreground_threshold)
                    gain = score(h.harmonize_slices(xs, pos, "restore")) - score(base)
                    row.append(f"{size:.4f} ({size / r0[name]:.2f}), w {h.last_gate:.2f}, {gain:+.2f}")
                rows.append(row)
            print()
            print(f"{title}:")
            print()
            print(markdown_table(["change", "default", "option"], rows))


if __name__ == "__main__":
    main()
