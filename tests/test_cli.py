import json
import subprocess
import sys

import medgap


def medgap_cmd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "medgap", *args], capture_output=True, text=True, cwd=cwd)


def test_version_and_help():
    done = medgap_cmd("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"medgap {medgap.__version__}"
    done = medgap_cmd("--help")
    assert done.returncode == 0 and "demo" in done.stdout


def test_demo_quick_summarises_sample_data(tmp_path):
    done = medgap_cmd("demo", "--quick", "--only", "data", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["data"]["metrics"]["spacing_mm"] == [2.0, 2.0, 2.0]
    assert (tmp_path / "out" / summary["data"]["figures"][0]).stat().st_size > 10_000
    from browser import check_page

    seen = check_page(tmp_path / "out" / "report.html", tmp_path / "demo.png")
    assert seen["broken"] == [] and seen["images"] == 1 and len(seen["sections"]) == 1


def test_inspect_and_clear_error(tmp_path):
    import nibabel as nib
    import numpy as np

    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.float32), np.diag([2.0, 2, 2, 1])), tmp_path / "ok.nii.gz")
    done = medgap_cmd("inspect", str(tmp_path / "ok.nii.gz"))
    assert done.returncode == 0 and json.loads(done.stdout)["spacing_mm"] == [2.0, 2.0, 2.0]
    nib.save(nib.Nifti1Image(np.full((4, 5, 6), np.nan, np.float32), np.eye(4)), tmp_path / "nan.nii.gz")
    done = medgap_cmd("inspect", str(tmp_path / "nan.nii.gz"))
    assert done.returncode == 2
    assert "nan.nii.gz" in done.stderr and "NaN" in done.stderr and "Traceback" not in done.stderr


def test_an_old_configuration_key_is_one_warning_line(tmp_path):
    done = medgap_cmd("synthesize", "train", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "m"),
                      "--set", "iterations=3")
    assert done.returncode == 2 and "missing.nii.gz" in done.stderr
    assert "warning: --set: configuration key 'iterations' is now 'train.steps'" in done.stderr
    assert "FutureWarning" not in done.stderr and "cli.py" not in done.stderr
