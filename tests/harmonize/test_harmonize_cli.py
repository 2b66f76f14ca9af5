"""End to end through the CLI on a tiny phantom: train, resume, apply, score, bad inputs."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medgap.cli import app
from medgap.harmonize.api import Harmonizer

from harmonize_helpers import TINY

runner = CliRunner()


def _sets(extra=()):
    out = []
    for item in list(TINY) + list(extra):
        out += ["--set", item]
    return out


@pytest.fixture()
def trained(tmp_path, target_file):
    model = tmp_path / "model"
    res = runner.invoke(app, ["harmonize", "train", str(target_file), "--out", str(model), "--device", "cpu",
                              *_sets()])
    assert res.exit_code == 0, res.output
    return model


def test_train_writes_model_folder_and_resumes(tmp_path, target_file, trained):
    assert {"config.json", "flow.safetensors", "README.md", "manifest.json"} <= {p.name for p in trained.iterdir()}
    meta = json.loads((trained / "config.json").read_text())
    assert meta["method"] == "harmonize" and meta["trained_on"]["targets"] == [str(target_file)]
    assert meta["extras"]["target_bits_per_dim"]["mean"] > 0
    # ActNorm's initialised state is saved with the weights
    h = Harmonizer.load(trained, device="cpu")
    assert all(bool(v) for k, v in h.model.state_dict().items() if k.endswith("initialized"))
    # templates were fitted from the target, not left at zero
    assert h.model.templates.abs().sum() > 0
    # a finished model folder is not replaced without --overwrite
    res = runner.invoke(app, ["harmonize", "train", str(target_file), "--out", str(trained), "--device", "cpu",
                              *_sets(["train.steps=6"])])
    assert res.exit_code != 0 and "--overwrite" in str(res.exception)
    # a longer run resumes from the last checkpoint instead of starting over
    res = runner.invoke(app, ["harmonize", "train", str(target_file), "--out", str(trained), "--device", "cpu",
                              "--overwrite", *_sets(["train.steps=6"])])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["resumed_from"] == 4 and summary["steps"] == 6


@pytest.mark.parametrize("method", ["blindharmony", "histogram", "lowfreq", "identity"])
def test_apply_keeps_grid_and_background(tmp_path, trained, source_file, method):
    out = tmp_path / f"h_{method}.nii.gz"
    res = runner.invoke(app, ["harmonize", "apply", str(trained), str(source_file), "--out", str(out),
                              "--method", method, "--device", "cpu"])
    assert res.exit_code == 0, res.output
    src, dst = nib.load(str(source_file)), nib.load(str(out))
    assert dst.shape == src.shape
    assert np.allclose(dst.affine, src.affine)
    a, b = src.get_fdata(), dst.get_fdata()
    bg = a <= 0.05 * np.percentile(a, 99.9)
    assert np.array_equal(a[bg], b[bg])
    assert np.all(np.isfinite(b))
    if method == "identity":
        # only the resampling to the 16x16 model grid and back changes the image
        assert np.corrcoef(a[~bg], b[~bg])[0, 1] > 0.8
    else:
        assert np.abs(a - b)[~bg].max() > 0


def test_score_json(trained, target_file, source_file):
    res = runner.invoke(app, ["harmonize", "score", str(trained), str(target_file), str(source_file), "--json",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert len(data) == 2 and all(np.isfinite(d["bits_per_dim"]) for d in data)
    assert len(data[0]["per_slice"]) > 1 and "z_score" in data[0]


def test_bad_inputs_give_clear_errors_and_no_output(tmp_path, trained):
    from medgap.cli import main

    def run(args):
        import sys

        old = sys.argv
        sys.argv = ["medgap", *args]
        try:
            with pytest.raises(SystemExit) as exc:
                main()
        finally:
            sys.argv = old
        return exc.value.code

    four_d = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(8, 8, 8, 3).astype(np.float32), np.eye(4)), str(four_d))
    two_d = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(8, 8).astype(np.float32), np.eye(4)), str(two_d))
    zeros = tmp_path / "zeros.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(zeros))
    nan = tmp_path / "nan.nii.gz"
    arr = np.random.rand(8, 8, 8).astype(np.float32)
    arr[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(nan))
    for bad in (four_d, two_d, zeros, nan):
        out = tmp_path / f"out_{bad.name}"
        assert run(["harmonize", "apply", str(trained), str(bad), "--out", str(out), "--device", "cpu"]) == 2
        assert not out.exists()
    # a model folder of another method
    meta = json.loads((trained / "config.json").read_text())
    assert meta["method"] == "harmonize"
    other = tmp_path / "other"
    from medgap.modelio import save_model

    save_model(other, method="transfer", config={"a": 1}, weights={"w": {"x": __import__("torch").zeros(1)}})
    out = tmp_path / "o.nii.gz"
    assert run(["harmonize", "apply", str(other), str(four_d), "--out", str(out)]) == 2
    assert not out.exists()


def test_apply_report_says_what_was_done_and_how_unusual_the_source_is(tmp_path, trained, source_file):
    out, report = tmp_path / "h.nii.gz", tmp_path / "h.json"
    res = runner.invoke(app, ["harmonize", "apply", str(trained), str(source_file), "--out", str(out),
                              "--method", "histogram", "--device", "cpu", "--report", str(report)])
    assert res.exit_code == 0, res.output
    saved = json.loads(report.read_text())
    assert saved["method"] == "histogram" and saved["output"] == str(out) and saved["restore_weight"] is None
    assert saved["bias_correction_3d"] is None  # the 3D bias stage belongs to the default only
    assert saved["slice_levelling"] is None  # so does the slice levelling
    assert np.isfinite(saved["source_bits_per_dim"]) and saved["source_z_score"] is not None
    # the report scores the slices the harmonisation prepared: the same as scoring the file on its own
    scored = Harmonizer.load(trained, device="cpu").score_file(source_file)
    assert saved["source_bits_per_dim"] == pytest.approx(scored["bits_per_dim"], rel=1e-6)
    before = (trained / "config.json").read_bytes()
    inside = runner.invoke(app, ["harmonize", "apply", str(trained), str(source_file), "--out", str(out),
                                 "--report", str(trained / "config.json")])  # the model's own file
    assert inside.exit_code != 0 and "config.json" in str(inside.exception)
    assert (trained / "config.json").read_bytes() == before
