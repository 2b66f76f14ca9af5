"""The ready model shipped with medgap: the bundled real T1 cohort's look, out of the box."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from medgap.cli import app
from medgap.harmonize.api import READY_MODELS, Harmonizer, resolve_model

runner = CliRunner()


def test_the_ready_model_is_shipped_whole_and_checksummed():
    folder = resolve_model("cohort-t1")
    assert folder.name == READY_MODELS["cohort-t1"] and folder.is_dir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"config.json", "flow.safetensors", "restore.safetensors"} <= set(manifest)
    assert not (folder.parent / f"{folder.name}.run").exists()  # no run folder shipped
    h = Harmonizer.load("cohort-t1", device="cpu")  # verifies every sha256
    assert h.default_method == "restore" and h.cfg.restore.bias_correction == "n4"
    assert not any("colin" in t or "s1" in t.lower() for t in h.info["trained_on"]["targets"])


def test_apply_with_the_ready_model_brings_a_changed_held_out_brain_closer(tmp_path):
    from medgap.data.cohort import load_brain

    brain = load_brain("colin27")  # held out from the ready model's training
    truth = np.where(brain.mask, brain.t1.data, 0).astype(np.float32)
    source = tmp_path / "colin_gamma.nii.gz"
    nib.save(nib.Nifti1Image(truth ** 1.5 * 800.0, brain.t1.affine), str(source))
    out, report = tmp_path / "h.nii.gz", tmp_path / "h.json"
    res = runner.invoke(app, ["harmonize", "apply", "cohort-t1", str(source), "--out", str(out),
                              "--report", str(report), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    result = np.asarray(nib.load(str(out)).dataobj, dtype=np.float32)

    def histogram_shape(v):  # in-brain quantiles relative to the 99.5th percentile: units do not count
        v = v[brain.mask].astype(np.float64)
        return np.percentile(v / np.percentile(v, 99.5), np.linspace(5, 95, 19))

    def distance(v):
        return float(np.abs(histogram_shape(v) - histogram_shape(truth)).mean())

    changed = np.asarray(nib.load(str(source)).dataobj, dtype=np.float32)
    assert distance(result) < 0.3 * distance(changed), (distance(changed), distance(result))  # measured 0.090 -> 0.013
    assert json.loads(report.read_text())["method"] == "restore"


def test_a_local_folder_of_that_name_wins(tmp_path, monkeypatch):
    shutil.copytree(resolve_model("cohort-t1"), tmp_path / "cohort-t1")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("cohort-t1") == tmp_path.joinpath("cohort-t1").relative_to(tmp_path)


def test_a_t2_like_contrast_and_a_ct_are_named_and_a_changed_t1_is_not():
    import dataclasses
    import warnings

    import torch

    from medgap.data.cohort import load_brain
    from medgap.harmonize.simulate import simulate
    from medgap.io import Volume

    brain = load_brain("colin27")  # held out from the ready model's training
    t1 = np.where(brain.mask, brain.t1.data, 0).astype(np.float32)
    t1 /= np.percentile(t1[brain.mask], 99.5)
    h = Harmonizer.load("cohort-t1", device="cpu")

    def warned(data, change=None):
        vol = Volume(data.astype(np.float32), brain.t1.affine)
        stack = h.prepare(vol)
        if change is not None:
            stack = dataclasses.replace(stack, slices=simulate(torch.from_numpy(stack.slices), change).numpy())
        return " ".join(h.input_warnings(vol, stack))

    for change in (None, "gamma1.3", "bias", "wm_dark", "lowres_noise", "spgr15", "dura"):
        assert warned(t1 * 800.0, change) == "", change  # a T1, also under every change it may meet
        assert h.last_contrast > -0.15
    t2_like = np.where(brain.mask, np.clip(1.2 - t1, 0, None), 0) * 1000.0  # CSF bright, WM dark
    assert "T2" in warned(t2_like) and h.last_contrast < -0.15
    ct = np.where(brain.mask, 25.0 + 15.0 * t1, -1000.0)  # Hounsfield units: air at -1000
    assert "CT in Hounsfield units" in warned(ct)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h.harmonize_volume(Volume(t2_like.astype(np.float32), brain.t1.affine))
    assert any("T2" in str(w.message) for w in caught) and any("T2" in n for n in h.last_warnings)
