"""Gap measures: chance level on two halves of one dataset, monotone in the shift they claim to see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from medgap.data.sample import load_icbm152
from medgap.data.shifts import apply_shift
from medgap.errors import InputError
from medgap.gap import GapData, normalise_volume, measure_gap
from medgap.io import SpectraSet, write_nifti, write_spectra


@pytest.fixture(scope="module")
def brain():
    b = load_icbm152(3.0)
    raw = b.t1.data * (b.mask.data > 0.5)
    return raw / raw.max(), b.wm.data


def side(name, volume):
    return GapData(name, "images", Path(name), items=[volume], item_names=[name])


def test_two_halves_of_one_brain_are_indistinguishable(brain):
    target = normalise_volume(brain[0])
    m = measure_gap(side("odd", target[:, :, 1::2].copy()), side("even", target[:, :, 0::2].copy()),
                    permutations=20, bootstrap=100)
    assert abs(m["classifier_test"]["balanced_accuracy"] - 0.5) <= 0.06
    assert m["classifier_test"]["grouped"]
    assert not any(v["detected"] for v in m["measures"].values()), m["measures"]


def test_paired_data_no_longer_scores_below_chance(brain):
    """A slice and its twin on the other side share anatomy; an ungrouped split scored 0.34 here."""
    raw, _ = brain
    target = normalise_volume(raw)
    same = normalise_volume(apply_shift(raw, "gamma", 0.0))
    m = measure_gap(side("copy", same), side("target", target), permutations=10, bootstrap=20)
    assert m["classifier_test"]["balanced_accuracy"] == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("kind, strengths, measures", [
    ("gamma", [0, 0.15, 0.3, 0.45, 0.6], ["tissue_w1", "contrast", "resnet_mmd2"]),
    ("bias", [0, 0.1, 0.2, 0.3, 0.4], ["bias", "resnet_mmd2"]),
    ("blur_noise", [0, 0.3, 0.6, 0.9, 1.2], ["texture_mmd2", "resnet_mmd2"]),  # voxels of 3 mm
])
def test_measures_rise_with_the_shift_they_claim_to_see(brain, kind, strengths, measures):
    raw, wm = brain
    target = normalise_volume(raw)
    values = {name: [] for name in measures}
    for s in strengths:
        shifted = normalise_volume(apply_shift(raw, kind, s, wm=wm))
        m = measure_gap(side("shifted", shifted), side("target", target), permutations=10, bootstrap=20)
        for name in measures:
            values[name].append(m["measures"][name]["value"])
    for name in measures:
        assert spearmanr(strengths, values[name])[0] >= 0.9, (name, values[name])
    assert m["measures"][measures[0]]["detected"]  # the specific measure clears its null level


def test_after_reports_how_much_of_the_gap_was_closed(brain, tmp_path):
    raw, _ = brain
    target = normalise_volume(raw)
    source = normalise_volume(apply_shift(raw, "gamma", 0.5))
    half = normalise_volume(apply_shift(raw, "gamma", 0.2))
    m = measure_gap(side("source", source), side("target", target), tmp_path / "g", after=side("fixed", half),
                    permutations=10, bootstrap=100)
    closed = m["closed"]["tissue_w1"]
    assert 0.3 < closed["closed"] < 0.9 and closed["ci95"][0] <= closed["closed"] <= closed["ci95"][1]
    assert any(line.startswith("tissue_w1: gap closed by") for line in m["headline"])
    assert "Gap closed" in (tmp_path / "g" / "report.html").read_text()
    undone = measure_gap(side("source", source), side("target", target), after=side("same", target.copy()),
                         permutations=10, bootstrap=100)
    assert undone["closed"]["tissue_w1"]["closed"] > 0.8


def test_spectra_per_class_distances_and_bad_inputs(tmp_path, rng):
    wl = np.linspace(500, 700, 12)

    def spectra(path, shift=0.0, labels=True):
        y = rng.integers(0, 2, 200)
        base = np.exp(-((wl[None] - 580 - 40 * y[:, None] - shift) / 50) ** 2)
        x = base * rng.uniform(0.8, 1.2, (200, 1)) + rng.normal(0, 0.01, base.shape)
        return write_spectra(path, SpectraSet(x.astype(np.float32), wl, y if labels else None))

    a, b, far = spectra(tmp_path / "a.npz"), spectra(tmp_path / "b.npz"), spectra(tmp_path / "far.npz", shift=20)
    near = measure_gap(a, b, permutations=10, bootstrap=50)
    shifted = measure_gap(a, far, permutations=10, bootstrap=50)
    assert shifted["measures"]["class_mean_distance"]["value"] > 5 * near["measures"]["class_mean_distance"]["value"]
    assert shifted["measures"]["class_mean_distance"]["detected"]
    unlabelled = spectra(tmp_path / "unlabelled.npz", labels=False)
    assert "class_mean_distance" not in measure_gap(a, unlabelled, permutations=10, bootstrap=20)["measures"]
    with pytest.raises(InputError, match="unlabelled.npz.*no labels"):
        measure_gap(a, unlabelled, permutations=10, bootstrap=20, per_class=True)
    write_nifti(tmp_path / "one" / "t1.nii.gz", rng.random((16, 16, 8)) + 0.1)
    with pytest.raises(InputError, match="one.*only 1 volume"):
        measure_gap(tmp_path / "one", tmp_path / "one", unit="volume", permutations=10, bootstrap=20)
    with pytest.raises(InputError, match="t1.nii.gz.*images"):
        measure_gap(a, tmp_path / "one" / "t1.nii.gz", after=tmp_path / "one" / "t1.nii.gz")


def test_volume_unit_with_many_volumes(tmp_path, brain):
    raw, _ = brain
    small = raw[::2, ::2, ::2]
    for i in range(3):
        write_nifti(tmp_path / "a" / f"s{i}.nii.gz", apply_shift(small, "gamma", 0.4 + 0.05 * i))
        write_nifti(tmp_path / "b" / f"s{i}.nii.gz", apply_shift(small, "gamma", 0.02 * i))
    m = measure_gap(tmp_path / "a", tmp_path / "b", unit="volume", permutations=10, bootstrap=20)
    assert m["unit"] == "volume" and m["a"]["samples"] == 3
    assert "resnet_mmd2" not in m["measures"] and m["measures"]["tissue_w1"]["detected"]


def test_cli_json_after_and_per_class(tmp_path, rng):
    import json

    from typer.testing import CliRunner

    from medgap.cli import app

    wl = np.linspace(500, 700, 10)

    def spectra(path, shift, labels=True):
        y = rng.integers(0, 2, 150)
        x = np.exp(-((wl[None] - 590 - 30 * y[:, None] - shift) / 50) ** 2) + rng.normal(0, 0.01, (150, 10))
        return write_spectra(path, SpectraSet(x.astype(np.float32), wl, y if labels else None))

    src, ref, fixed = spectra(tmp_path / "sim.npz", 25), spectra(tmp_path / "real.npz", 0), spectra(tmp_path / "t.npz", 5)
    runner = CliRunner()
    result = runner.invoke(app, ["gap", str(src), str(ref), "--after", str(fixed), "--json", "--permutations", "10",
                                 "--bootstrap", "30", "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["closed"]["class_mean_distance"]["closed"] > 0.5
    assert json.loads((tmp_path / "g" / "metrics.json").read_text())["headline"] == metrics["headline"]
    bare = spectra(tmp_path / "bare.npz", 0, labels=False)
    result = runner.invoke(app, ["gap", str(src), str(bare), "--per-class", "--bootstrap", "20", "--permutations", "10"])
    assert isinstance(result.exception, InputError) and "bare.npz" in str(result.exception)
