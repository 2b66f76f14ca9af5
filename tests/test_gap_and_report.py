import json

import numpy as np
import pytest

from medgap.errors import InputError
from medgap.gap import measure_gap
from medgap.io import SpectraSet, write_nifti, write_spectra
from medgap.report.html import write_html_report

from browser import check_page


def spectra_file(path, rng, shift=0.0, n=300, wavelengths=None):
    wl = np.linspace(500, 700, 20) if wavelengths is None else wavelengths
    base = np.exp(-((wl - 600 - shift) / 60) ** 2)
    spectra = base[None] * rng.uniform(0.5, 1.5, (n, 1)) + rng.normal(0, 0.02, (n, len(wl)))
    return write_spectra(path, SpectraSet(spectra.astype(np.float32), wl))


def test_gap_separates_shifted_spectra_not_identical_ones(tmp_path, rng):
    a = spectra_file(tmp_path / "a.npz", rng)
    same = spectra_file(tmp_path / "same.npz", rng)
    shifted = spectra_file(tmp_path / "shifted.npz", rng, shift=15)
    near = measure_gap(a, same, permutations=10)
    far = measure_gap(a, shifted, tmp_path / "report", permutations=10)
    assert far["mmd2"] > 10 * max(near["mmd2"], 1e-4)
    assert far["fid"] > 10 * near["fid"]
    assert far["classifier_test"]["balanced_accuracy"] > 0.9 and far["classifier_test"]["p_value"] < 0.1
    assert near["classifier_test"]["balanced_accuracy"] < 0.65
    written = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert written["mmd2"] == pytest.approx(far["mmd2"])
    assert {p.name for p in (tmp_path / "report").iterdir()} == {
        ".medgap-outputs.json", "metrics.json", "pca_kde.png", "spectra.png", "report.html"}


def test_gap_on_volumes_detects_contrast_change(tmp_path, rng):
    from medgap.data.sample import load_icbm152

    brain = load_icbm152(3.0)
    t1 = brain.t1.data.copy()
    write_nifti(tmp_path / "a" / "t1.nii.gz", t1, like=brain.t1)
    inverted = np.where(brain.mask.data > 0, 1.0 - t1, 0.0)  # a non-monotonic, T2-like contrast
    write_nifti(tmp_path / "b" / "t2like.nii.gz", inverted, like=brain.t1)
    result = measure_gap(tmp_path / "a", tmp_path / "b", permutations=10, max_slices=24)
    assert result["unit"] == "slice" and result["a"]["samples"] >= 16
    assert result["classifier_test"]["balanced_accuracy"] > 0.8


def test_gap_bad_inputs(tmp_path, rng):
    a = spectra_file(tmp_path / "a.npz", rng)
    other = spectra_file(tmp_path / "other_grid.npz", rng, wavelengths=np.linspace(400, 600, 20))
    with pytest.raises(InputError, match="a.npz: wavelengths 500-700 nm do not match .*other_grid.npz"):
        measure_gap(a, other)
    fewer = spectra_file(tmp_path / "fewer.npz", rng, wavelengths=np.linspace(500, 700, 10))
    with pytest.raises(InputError, match="a.npz: has 20 channels but .*fewer.npz has 10"):
        measure_gap(a, fewer)
    write_nifti(tmp_path / "vol.nii.gz", rng.random((16, 16, 8)))
    with pytest.raises(InputError, match="vol.nii.gz.*images"):
        measure_gap(a, tmp_path / "vol.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty.*no volumes"):
        measure_gap(a, tmp_path / "empty")
    one = spectra_file(tmp_path / "one.npz", rng, n=1)
    with pytest.raises(InputError, match="one.npz.*at least 2"):
        measure_gap(a, one)


def test_report_renders_in_headless_chromium(tmp_path, rng):
    a = spectra_file(tmp_path / "a.npz", rng)
    b = spectra_file(tmp_path / "b.npz", rng, shift=10)
    out = tmp_path / "gap"
    measure_gap(a, b, out, permutations=10)
    extra = write_html_report(
        tmp_path / "multi.html", "Two sections",
        [{"title": "First", "summary": "s", "metrics": {"x": 1.5}, "figures": ["gap/pca_kde.png"]},
         {"title": "Second", "summary": "t", "metrics": {"y": {"z": 2}}, "figures": ["gap/spectra.png"]}],
        base_dir=tmp_path,
    )
    for page in (out / "report.html", extra):
        seen = check_page(page, tmp_path / f"{page.stem}.png")
        assert seen["images"] >= 1 and seen["broken"] == []
        assert all(s["heading"] and s["height"] > 50 for s in seen["sections"])
        assert (tmp_path / f"{page.stem}.png").stat().st_size > 20_000
    assert len(check_page(extra, tmp_path / "again.png")["sections"]) == 2


def test_report_figures_have_captions_and_tables_are_html(tmp_path, rng):
    a = spectra_file(tmp_path / "a.npz", rng)
    b = spectra_file(tmp_path / "b.npz", rng, shift=10)
    measure_gap(a, b, tmp_path / "g", after=b, permutations=10, bootstrap=20)
    page = (tmp_path / "g" / "report.html").read_text()
    assert "overlapping clouds mean the network sees no gap" in page
    assert "<h3>Gap closed</h3><table>" in page and "spectral_mmd2" in page
