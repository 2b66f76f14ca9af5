"""PCA and histogram figures and the HTML report of ``medgap gap``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medgap.io import (
    atomic_write_text,
)
from medgap.outputs import json_text
from medgap.report.figures import plt, save_figure
from medgap.report.html import write_html_report
from medgap.gap.data import GapData

def _pca_figure(fa, fb, names, path: Path) -> None:
    from scipy.stats import gaussian_kde
    from sklearn.decomposition import PCA

    pooled = np.concatenate([fa, fb])
    pca = PCA(2).fit(pooled)
    fig, ax = plt.subplots(figsize=(6, 5))
    for feats, name, colour in [(fa, names[0], "tab:blue"), (fb, names[1], "tab:orange")]:
        pts = pca.transform(feats)
        ax.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.35, color=colour, label=f"{name} (n={len(feats)})")
        if len(pts) > 3 and np.all(pts.std(0) > 1e-9):
            try:
                kde = gaussian_kde(pts.T)
                lo, hi = pca.transform(pooled).min(0), pca.transform(pooled).max(0)
                gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 80), np.linspace(lo[1], hi[1], 80))
                dens = kde(np.vstack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
                ax.contour(gx, gy, dens, levels=4, colors=colour, linewidths=1)
            except np.linalg.LinAlgError:
                pass  # degenerate cloud: the scatter alone is shown
    ratio = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({ratio[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({ratio[1]:.0%} of variance)")
    ax.set_title("PCA of features with KDE contours")
    ax.legend()
    save_figure(fig, path)


def _histogram_figure(a: GapData, b: GapData, va, vb, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if a.kind == "images":
        bins = np.linspace(0, 1, 65)
        ax.hist(va, bins=bins, density=True, alpha=0.5, label=a.name)
        ax.hist(vb, bins=bins, density=True, alpha=0.5, label=b.name)
        ax.set_xlabel("normalised intensity (foreground voxels)")
        ax.set_ylabel("density")
        ax.set_title("Intensity histograms")
    else:
        for feats, name in [(va, a.name), (vb, b.name)]:
            mean, sd = feats.mean(0), feats.std(0)
            line, = ax.plot(a.wavelengths, mean, label=name)
            ax.fill_between(a.wavelengths, mean - sd, mean + sd, alpha=0.2, color=line.get_color())
        ax.set_xlabel("wavelength (nm)")
        ax.set_ylabel("L2-normalised intensity")
        ax.set_title("Mean +- sd spectra")
    ax.legend()
    save_figure(fig, path)



def _headline(closed: dict) -> list[str]:
    lines = []
    for name, c in closed.items():
        if c["closed"] is None:
            lines.append(f"{name}: no gap before (within resampling noise)")
        else:
            lo, hi = c["ci95"]
            share = 100 * c["closed"]
            verb = f"closed by {share:.0f}%" if share >= 0 else f"widened by {-share:.0f}%"
            lines.append(f"{name}: gap {verb} (closed 95% CI {100 * lo:.0f} to {100 * hi:.0f}%)")
    return lines


def _measure_rows(table: dict) -> list[list]:
    return [[name, m["sees"], m["value"], f"{m['ci95'][0]:.4g} .. {m['ci95'][1]:.4g}", m["null95"],
             "yes" if m["detected"] else "no"] for name, m in table.items()]


def _write_report(out: Path, metrics: dict, da: GapData, db: GapData, dc: GapData | None, figure_data) -> None:
    fa, fb, va, vb = figure_data
    _pca_figure(fa, fb, (da.name, db.name), out / "pca_kde.png")
    hist_name = "intensity_histograms.png" if da.kind == "images" else "spectra.png"
    _histogram_figure(da, db, va, vb, out / hist_name)
    atomic_write_text(out / "metrics.json", json_text(metrics, indent=2))
    before = metrics.get("before", metrics)
    columns = ["measure", "sees", "value", "bootstrap 95% CI", "null level (95%)", "gap detected"]
    tables = {f"{da.name} vs {db.name}": {"columns": columns, "rows": _measure_rows(before["measures"])}}
    ct = before["classifier_test"]
    summary = (f"{da.name} vs {db.name}: {before['a']['samples']} vs {before['b']['samples']} {before['unit']} "
               f"samples. A classifier (network features: {before['features']}, plus tissue intensity and texture "
               f"descriptors; folds keep subjects and slice positions together) tells them apart with balanced "
               f"accuracy {ct['balanced_accuracy']:.2f} (0.5 = indistinguishable; "
               f"permutation p = {ct['p_value']:.3g}).")
    if dc is not None:
        after = metrics["after"]
        tables[f"{dc.name} vs {db.name}"] = {"columns": columns, "rows": _measure_rows(after["measures"])}
        tables["Gap closed"] = {"columns": ["measure", "closed", "bootstrap 95% CI"],
                                "rows": [[k, "-" if c["closed"] is None else f"{100 * c['closed']:.0f}%",
                                          c.get("note") if c["closed"] is None else
                                          f"{100 * c['ci95'][0]:.0f} .. {100 * c['ci95'][1]:.0f}%"]
                                         for k, c in metrics["closed"].items()]}
        summary += (f" After: {dc.name} vs {db.name}, classifier balanced accuracy "
                    f"{after['classifier_test']['balanced_accuracy']:.2f}. " + " ".join(metrics["headline"]))
    write_html_report(
        out / "report.html",
        f"Domain gap: {da.name} vs {db.name}" + (f" (after: {dc.name})" if dc is not None else ""),
        [{"title": "Gap measures", "summary": summary,
          "metrics": {k: before[k] for k in ("fid", "mmd2", "classifier_test", "unit", "features")},
          "figures": ["pca_kde.png", hist_name], "tables": tables,
          "captions": {"pca_kde.png": "PCA of the network features: overlapping clouds mean the network sees no gap.",
                       hist_name: ("Foreground intensity histograms: shifted or reshaped curves show an intensity "
                                   "gap." if da.kind == "images" else "Mean +- sd spectra: where the bands "
                                   "separate, the domains differ.")}}],
        base_dir=out,
        note=("Null level: the 95th percentile of each measure between random halves of the reference, i.e. "
              "what resampling alone produces; a gap is detected above it. FID/MMD use medgap's fixed "
              "random-weight feature extractor: compare them between medgap runs only."),
    )
