"""What each piece of the default harmonisation contributes (one training seed).

The flow and the cohort are those of bench_harmonize_quality; the restoration net is
retrained with one piece switched off at a time: the random sharpening of the clean
targets (``restore.sharpen=0``) and the standardisation of the changed training slices to
their own histogram (``restore.standardize_inputs=false``); and one piece switched on: the
neighbouring slice on each side as extra input channels (``restore.context=1``, 3D context).
Each variant is scored as the default (gated) and as the network alone, on the six untouched
test subjects and on the validation subject (Colin 27, every second slice, each randomly
moved), and the gated default also on the consecutive, unmoved slices of the real test volume S1
(the whole volume: the setting 3D context is made for), mean PSNR in the brain over the 13 source changes.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from machine import markdown_table

from medgap.harmonize.api import Harmonizer
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.evaluate import compare_methods, heldout_subject_slices, perturb
from medgap.harmonize.simulate import COMBINED_DOMAINS, DOMAINS, HARD_DOMAINS
from medgap.harmonize.train import train

VARIANTS = {"default": [], "no sharpening": ["restore.sharpen=0"],
            "no own-histogram standardisation in training": ["restore.standardize_inputs=false"],
            "with 3D context (neighbouring slices as input)": ["restore.context=1"]}


def main() -> None:
    from medgap.harmonize.data import load_test_slices

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter training")
    args = parser.parse_args()
    steps = 60 if args.quick else 300
    domains = DOMAINS + COMBINED_DOMAINS
    hard = [d for d in domains if d in HARD_DOMAINS or "+" in d]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in VARIANTS.items():
            cfg = HarmonizeConfig.from_preset("cpu-small", overrides=[f"train.steps={steps}",
                                                                      "train.checkpoint_every=100000", *overrides])
            train(cfg, None, Path(tmp) / name, progress=False)
            h = Harmonizer.load(Path(tmp) / name, device="cpu")
            net_only = Harmonizer.load(Path(tmp) / name, device="cpu", overrides=("restore.output=network",))
            methods = {"gated": ("restore", None), "network": ("restore", net_only)}
            test, brain, pos, _ = load_test_slices(cfg.flow.image_size)
            test, brain = perturb(test, brain, seed=1)
            val = heldout_subject_slices(cfg.flow.image_size, every=2, seed=1)
            volume = heldout_subject_slices(cfg.flow.image_size, every=1, seed=None, name="s1")
            res = {"test": compare_methods(h, test, brain, pos, domains, methods, seed=1, separate=True),
                   "validation": compare_methods(h, *val, domains, methods, seed=1),
                   "volume": compare_methods(h, *volume, domains, {"gated": methods["gated"]}, seed=1)}
            row = [name]
            for part, col in (("test", "gated"), ("test", "network"), ("validation", "gated"),
                              ("validation", "network"), ("volume", "gated")):
                r = res[part]
                row.append(f"{np.mean([r[d][col]['psnr_brain'] for d in domains]):.2f} / "
                           f"{np.mean([r[d][col]['psnr_brain'] for d in hard]):.2f}")
            rows.append(row)
    print(f"One training seed, cpu-small, {steps} flow steps + {10 * steps} network steps per variant. Cells: mean "
          "PSNR in the brain over all 13 changes / over the 5 hard and combined ones (dB).")
    print()
    print(markdown_table(["variant", "test: default (gated)", "test: network only", "validation: default (gated)",
                          "validation: network only", "test volume S1, unmoved: default (gated)"], rows))


if __name__ == "__main__":
    main()
