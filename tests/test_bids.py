"""BIDS datasets in, BIDS derivatives out: harmonize apply/train and gap on dataset roots."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medgap.adapters.bids import derivative_name, find_anat
from medgap.cli import app
from medgap.errors import InputError
from medgap.gap import measure_gap

runner = CliRunner()
TINY = ["flow.image_size=[16,16]", "flow.levels=2", "flow.steps=1", "flow.hidden=4", "flow.blocks=1", "flow.bins=4",
        "train.batch_size=4", "train.steps=2", "data.template_bins=4", "harmonize.iterations=2"]


def _brain(path, seed):
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in (30, 36, 12)], indexing="ij")
    r = (x / 0.8) ** 2 + (y / 0.85) ** 2 + (z / 1.3) ** 2
    vol = (np.where(r < 1, 400.0, 0.0) + np.where(r < 0.45, 300.0, 0.0)) * (1 + 0.02 * rng.standard_normal(r.shape))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(vol.astype(np.float32), np.diag([2.0, 2.0, 3.0, 1.0])), str(path))


@pytest.fixture()
def bids(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    _brain(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz", 0)
    _brain(root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_T1w.nii.gz", 1)
    _brain(root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_T2w.nii.gz", 2)
    (root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_T1w.json").write_text("{}")
    return root


def test_find_anat_and_derivative_names(bids, tmp_path):
    files = find_anat(bids)
    assert [f.name for f in files] == ["sub-01_T1w.nii.gz", "sub-02_ses-1_T1w.nii.gz"]
    assert [f.name for f in find_anat(bids, ["sub-02"], "T2w")] == ["sub-02_ses-1_T2w.nii.gz"]
    out = derivative_name(bids, files[1], tmp_path / "deriv")
    assert out == tmp_path / "deriv" / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_desc-harmonized_T1w.nii.gz"
    with pytest.raises(InputError, match="participant"):
        find_anat(bids, ["03"])


def test_harmonize_a_bids_dataset_into_derivatives(bids, tmp_path):
    model, deriv = tmp_path / "model", tmp_path / "derivatives" / "medgap"
    sets = [a for item in TINY for a in ("--set", item)]
    res = runner.invoke(app, ["harmonize", "train", str(bids), "--out", str(model), "--device", "cpu", *sets])
    assert res.exit_code == 0, res.output
    assert len(json.loads((model / "config.json").read_text())["trained_on"]["targets"]) == 2
    res = runner.invoke(app, ["harmonize", "apply", str(model), str(bids), "--out", str(deriv), "--device", "cpu",
                              "--participant-label", "02", "--method", "histogram"])
    assert res.exit_code == 0, res.output
    image = deriv / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_desc-harmonized_T1w.nii.gz"
    assert sorted(p.name for p in deriv.rglob("*") if p.is_file()) == [
        "dataset_description.json", "sub-02_ses-1_desc-harmonized_T1w.json", image.name]
    sidecar = json.loads(image.with_name("sub-02_ses-1_desc-harmonized_T1w.json").read_text())
    assert sidecar["Sources"] == ["bids:raw:sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz"]
    assert sidecar["Method"] == "histogram"
    description = json.loads((deriv / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "medgap"
    src = nib.load(str(bids / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_T1w.nii.gz"))
    np.testing.assert_array_equal(nib.load(str(image)).affine, src.affine)
    # every participant, then the gap between the two dataset roots
    res = runner.invoke(app, ["harmonize", "apply", str(model), str(bids), "--out", str(deriv), "--device", "cpu",
                              "--method", "histogram"])
    assert res.exit_code == 0, res.output
    m = measure_gap(bids, deriv, permutations=10, bootstrap=20)
    assert m["a"]["samples"] > 0 and m["classifier_test"]["grouped"]


def test_another_pipelines_derivatives_are_not_overwritten(bids, tmp_path):
    from medgap.adapters.bids import write_derivative_description

    deriv = tmp_path / "fmriprep"
    deriv.mkdir()
    (deriv / "dataset_description.json").write_text(json.dumps({"GeneratedBy": [{"Name": "fMRIPrep"}]}))
    with pytest.raises(InputError, match="another pipeline"):
        write_derivative_description(deriv, "harmonize", "x")
    assert "fMRIPrep" in (deriv / "dataset_description.json").read_text()
