"""``measure_gap``: every measure for A vs B (and B vs the after-transfer C)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from medgap.errors import InputError
from medgap.outputs import staged_output_folder
from medgap.metrics import frechet_distance, mmd2_unbiased
from medgap.metrics.tissue import TISSUE_MEASURES
from medgap.gap.stats import _Sample, _class_mean_distance, _closed, _measure_table, _spectral_mmd2, classifier_two_sample_test
from medgap.gap.figures import _headline, _write_report
from medgap.gap.features import ImageSide, _image_side, _nonzero, _spectral_features
from medgap.gap.data import Unit, GapData, MAX_SAMPLES_MMD, _check_same_wavelengths, load_gap_data

def _load(x, name, seed) -> GapData:
    return x if isinstance(x, GapData) else load_gap_data(x, name, seed=seed)


def _compare(da: GapData, db: GapData, unit: str, max_slices: int, permutations: int, bootstrap: int,
             seed: int, per_class: bool | None = None, sides: dict | None = None) -> tuple[dict, dict, tuple]:
    """Every measure between ``da`` and the reference ``db``: (metrics, bootstrap draws, figure data).

    ``sides`` caches image sides by dataset, so the reference is summarised once for before and after.
    """
    if da.kind != db.kind:
        raise InputError(da.source, f"holds {da.kind} but {db.source} holds {db.kind}: compare like with like")
    if da.kind == "images":
        sides = {} if sides is None else sides
        for data in (da, db):
            if id(data) not in sides:
                sides[id(data)] = _image_side(data, unit, max_slices, seed)
        sa, sb = sides[id(da)], sides[id(db)]
        fa, fb, va, vb = sa.features, sb.features, sa.values, sb.values
        feature_desc = ("MONAI ResNet-10 3D, fixed seeded random weights, volumes at 64^3" if unit == "volume"
                        else "MONAI ResNet-10 2D, fixed seeded random weights, axial slices at 128^2")
        measures = {name: (lambda x, y, fn=fn: fn(x[0], y[0]), sees, reads)
                    for name, (fn, sees, reads) in TISSUE_MEASURES.items()}
        if unit == "slice":  # network features are per slice too: resampled with the summaries
            measures["resnet_mmd2"] = (lambda x, y: mmd2_unbiased(x[1], y[1]), "anything the feature network sees",
                                       "MMD^2 of the ResNet slice features")
        per_slice = unit == "slice"  # with volumes, features are per volume: not resampled with slices

        def image_sample(side: ImageSide, feats: np.ndarray) -> _Sample:
            return _Sample((side.summaries, feats if per_slice else None), len(side.summaries),
                           lambda d, i: (d[0].take(i), None if d[1] is None else d[1][i]))

        sample_a, sample_b = image_sample(sa, fa), image_sample(sb, fb)
        clf_a, clf_b = np.concatenate([fa, sa.descriptors], 1), np.concatenate([fb, sb.descriptors], 1)
        groups = (sa.sample_groups, sb.sample_groups)
    else:
        _check_same_wavelengths(db, da)
        fa, fb = _spectral_features(da), _spectral_features(db)
        va, vb = fa, fb
        unit, feature_desc = "spectrum", "L2-normalised spectra"
        labelled = da.labels is not None and db.labels is not None
        if per_class and not labelled:
            missing = da if da.labels is None else db
            raise InputError(missing.source, "has no labels: per-class distances need labels on both sides")
        labelled = labelled and per_class is not False
        measures = {"spectral_mmd2": (lambda x, y: _spectral_mmd2(x[0], y[0]), "any change of spectral shape",
                                      "MMD^2 of L2-normalised spectra")}
        if labelled:
            measures["class_mean_distance"] = (_class_mean_distance, "per-class spectral shifts",
                                               "mean L2 distance of class-mean normalised spectra")
        rng = np.random.default_rng(seed)

        def spectra_sample(data: GapData, feats: np.ndarray) -> _Sample:
            labels = data.labels[_nonzero(data)] if labelled else None
            order = rng.permutation(len(feats))  # MMD takes the first spectra of a sample: make them random
            return _Sample((feats[order], None if labels is None else labels[order]), len(feats),
                           lambda d, i: (d[0][i], None if d[1] is None else d[1][i]))

        sample_a, sample_b = spectra_sample(da, fa), spectra_sample(db, fb)
        clf_a, clf_b, groups = fa, fb, (None, None)
    for data, feats in ((da, fa), (db, fb)):
        if len(feats) < 2:
            raise InputError(data.source, f"only {len(feats)} {unit} sample(s): need at least 2 on each side")
    rng = np.random.default_rng(seed)
    sub_a = fa[rng.choice(len(fa), min(len(fa), MAX_SAMPLES_MMD), replace=False)]
    sub_b = fb[rng.choice(len(fb), min(len(fb), MAX_SAMPLES_MMD), replace=False)]
    table, draws = _measure_table(sample_a, sample_b, measures, bootstrap, seed)
    metrics = {
        "a": {"name": da.name, "source": str(da.source), "samples": int(len(fa))},
        "b": {"name": db.name, "source": str(db.source), "samples": int(len(fb))},
        "kind": da.kind,
        "unit": unit,
        "features": feature_desc,
        "fid": frechet_distance(fa, fb),
        "mmd2": mmd2_unbiased(sub_a, sub_b),
        "classifier_test": classifier_two_sample_test(clf_a, clf_b, permutations, seed, *groups),
        "measures": table,
    }
    return metrics, draws, (fa, fb, va, vb)


def measure_gap(
    a: str | Path | GapData,
    b: str | Path | GapData,
    out_dir: str | Path | None = None,
    *,
    after: str | Path | GapData | None = None,
    name_a: str | None = None,
    name_b: str | None = None,
    name_after: str | None = None,
    unit: Unit = "auto",
    min_volumes: int = 10,
    max_slices: int = 96,
    permutations: int = 100,
    bootstrap: int = 200,
    per_class: bool | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Measure how far dataset ``a`` is from the reference ``b``; with ``after``, also how far
    ``after`` (a harmonised or transferred ``a``) is, and how much of the gap it closed.

    Returns the metrics dict that is also written to ``out_dir/metrics.json``: FID, MMD^2 and a
    group-aware classifier two-sample test on features, and ``measures``: each of medgap's gap
    measures (see :mod:`medgap.metrics.tissue` for images) with its value, bootstrap 95% interval
    and null level. With ``after``: ``{"before": ..., "after": ..., "closed": ..., "headline": [...]}``.
    Spectra: ``per_class`` None compares class by class when both sides have labels, True
    requires labels on both sides, False never compares per class. ``out_dir`` is refused before
    any work when it is an input or holds an earlier report (unless ``overwrite``), see
    :func:`medgap.outputs.staged_output_folder`.
    """
    inputs = [p for p in (a, b, after) if isinstance(p, (str, Path))]
    stage = (contextlib.nullcontext(None) if out_dir is None else
             staged_output_folder(out_dir, inputs=inputs, overwrite=overwrite, names=("metrics.json", "report.html")))
    with stage as staging:  # checked before the work: a bad --out fails at once
        da, db = _load(a, name_a, seed), _load(b, name_b, seed)
        dc = None if after is None else _load(after, name_after, seed)
        if da.name == db.name:
            da.name, db.name = f"A: {da.name}", f"B: {db.name}"
        for other in (da, dc):
            if other is not None and other.kind != db.kind:
                raise InputError(other.source, f"holds {other.kind} but {db.source} holds {db.kind}: "
                                               "compare like with like")
        if da.kind == "images" and unit == "auto":
            sides = [da, db] + ([dc] if dc is not None else [])
            unit = "volume" if min(len(d) for d in sides) >= min_volumes else "slice"
        sides: dict = {}
        before, draws_before, figure_data = _compare(da, db, unit, max_slices, permutations, bootstrap, seed, per_class,
                                                     sides)
        metrics = before
        if dc is not None:
            after_metrics, draws_after, _ = _compare(dc, db, unit, max_slices, permutations, bootstrap, seed, per_class,
                                                     sides)
            closed = _closed(before["measures"], after_metrics["measures"], draws_before, draws_after)
            metrics = {"before": before, "after": after_metrics, "closed": closed, "headline": _headline(closed)}
        if staging is not None:
            _write_report(staging, metrics, da, db, dc, figure_data)
    return metrics
