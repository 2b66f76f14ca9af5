"""Do medgap's gap measures move when a gap opens, and stay put when there is none?

On the real ICBM152 T1 (1 mm, brain-masked; nothing simulated but the shifts):

* **Null**: odd vs even axial slices of the same brain (two halves of one dataset) over 5 seeds:
  the classifier two-sample test must sit at 0.5 +- 0.05 and every distance below its null level.
* **Response curves**: the brain against itself after each shift of ``medgap.data.shifts`` at 6
  strengths (0 = unchanged). For every measure, Spearman's rho with the strength. A measure is
  reported as a gap number for the shifts it claims to see only where rho >= 0.9.
* **Time**: ``measure_gap`` on two 1 mm volumes (the target and gamma 1.3), end to end.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from machine import markdown_table
from scipy.stats import spearmanr

from medgap.data.sample import load_icbm152
from medgap.data.shifts import apply_shift
from medgap.gap import GapData, normalise_volume, measure_gap

SHIFTS = {
    "gamma up (g 1 -> 1.6)": ("gamma", [0, 0.12, 0.24, 0.36, 0.48, 0.6]),
    "gamma down (g 1 -> 0.6)": ("gamma", [0, -0.08, -0.16, -0.24, -0.32, -0.4]),
    "bias field (0 -> 0.4)": ("bias", [0, 0.08, 0.16, 0.24, 0.32, 0.4]),
    "blur + noise (0 -> 2 voxels)": ("blur_noise", [0, 0.4, 0.8, 1.2, 1.6, 2.0]),
    "WM darkened (0 -> 0.5)": ("wm_dark", [0, 0.1, 0.2, 0.3, 0.4, 0.5]),
}
# which shifts each measure claims to see (docs/gap.md says the same). WM darkening past grey
# matter is in the table but claimed by none: no measure grows monotonically through the crossing
# (tissue classes come from intensity), so none reports it as a gap size; the classifier detects it.
CLAIMS = {
    "tissue_w1": ["gamma"],
    "contrast": ["gamma"],
    "bias": ["bias"],
    "texture_mmd2": ["blur_noise"],
    "resnet_mmd2": ["gamma", "bias", "blur_noise"],
    "fid": ["gamma", "bias", "blur_noise"],
}


def side(name: str, volume: np.ndarray) -> GapData:
    return GapData(name, "images", Path(name), items=[volume], item_names=[name])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2 mm, 3 null seeds")
    args = parser.parse_args()
    resolution, seeds = (2.0, 3) if args.quick else (1.0, 5)
    brain = load_icbm152(resolution)
    raw = brain.t1.data * (brain.mask.data > 0.5)
    raw = raw / raw.max()
    wm = brain.wm.data
    target = normalise_volume(raw)
    print(f"Real ICBM152 T1 at {resolution:g} mm ({'x'.join(map(str, raw.shape))}), brain-masked. Measures from "
          "`medgap.metrics.tissue` plus MMD^2/FID of the fixed random-weight MONAI ResNet-10 2D slice features; "
          "classifier: ridge linear discriminant, 5 x 5-fold CV, folds grouped by slice position.")
    print()

    # null: two halves of one dataset
    rows, accs = [], []
    for seed in range(seeds):
        m = measure_gap(side("odd slices", target[:, :, 1::2].copy()), side("even slices", target[:, :, 0::2].copy()),
                        permutations=100, bootstrap=200, seed=seed)
        accs.append(m["classifier_test"]["balanced_accuracy"])
        rows.append([seed, f"{accs[-1]:.3f}", f"{m['classifier_test']['p_value']:.2f}"]
                    + [f"{v['value']:.4g} / {v['null95']:.4g}" for v in m["measures"].values()])
        names = list(m["measures"])
    print("**Null** (odd vs even slices of one brain). Cells: value / null level; a gap is reported only above it.")
    print()
    print(markdown_table(["seed", "classifier acc.", "p"] + names, rows))
    print()
    print(f"Classifier balanced accuracy over seeds: {np.mean(accs):.3f} +- {np.std(accs):.3f} (target 0.5 +- 0.05).")
    print()

    # response curves
    table, verdicts = [], []
    for label, (kind, strengths) in SHIFTS.items():
        values: dict[str, list[float]] = {}
        for s in strengths:
            shifted = normalise_volume(apply_shift(raw, kind, s, wm=wm))
            m = measure_gap(side("shifted", shifted), side("target", target), permutations=20, bootstrap=20)
            for name, v in m["measures"].items():
                values.setdefault(name, []).append(v["value"])
            values.setdefault("fid", []).append(m["fid"])
            values.setdefault("classifier", []).append(m["classifier_test"]["balanced_accuracy"])
        for name, vals in values.items():
            rho = spearmanr(strengths if kind != "gamma" else np.abs(strengths), vals)[0]
            claimed = kind in CLAIMS.get(name, [])
            ok = claimed and rho >= 0.9
            table.append([label, name, f"{rho:+.2f}", "yes" if claimed else "-", "**yes**" if ok else
                          ("no" if claimed else "-"), " ".join(f"{v:.3g}" for v in vals)])
            if claimed:
                verdicts.append((name, label, ok))
    print("**Response curves** (each shift at 6 strengths, 0 first). A claimed measure is a gap number for that "
          "shift when Spearman rho >= 0.9.")
    print()
    print(markdown_table(["shift", "measure", "Spearman rho", "claims it", "reported", "values by strength"], table))
    print()
    failed = [f"{n} on {s}" for n, s, ok in verdicts if not ok]
    print(f"Claimed (measure, shift) pairs with rho >= 0.9: {sum(ok for *_, ok in verdicts)} of {len(verdicts)}"
          + (f"; not met: {', '.join(failed)}." if failed else "."))
    print("The classifier two-sample test saturates at 1.0 as soon as a shift is visible: it is reported as a test "
          "(accuracy, p-value), never as a gap number. WM darkening is claimed by no measure: as white matter "
          "passes grey matter, intensity-defined tissue classes swap and every distance falls back before rising; "
          "the classifier detects it at every strength.")
    print()

    # time on two 1 mm volumes, files to report
    with tempfile.TemporaryDirectory() as tmp:
        full = load_icbm152(1.0)
        t1 = full.t1.data * (full.mask.data > 0.5)
        nib.save(nib.Nifti1Image(t1, full.t1.affine), f"{tmp}/target.nii.gz")
        nib.save(nib.Nifti1Image(apply_shift(t1, "gamma", 0.3), full.t1.affine), f"{tmp}/source.nii.gz")
        start = time.perf_counter()
        measure_gap(f"{tmp}/source.nii.gz", f"{tmp}/target.nii.gz", f"{tmp}/report")
        seconds = time.perf_counter() - start
    print(f"`medgap gap` on two 1 mm volumes (197x233x189), report included: {seconds:.1f} s (target < 30 s).")


if __name__ == "__main__":
    main()
