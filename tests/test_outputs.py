"""No command writes over its inputs or over a user's files in an output folder (medgap.outputs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medgap.cli import app
from medgap.errors import InputError
from medgap.io import SpectraSet, write_spectra
from medgap.outputs import MANIFEST, check_output_file, staged_output_folder

runner = CliRunner()


def _nifti(path: Path) -> Path:
    nib.save(nib.Nifti1Image(np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4) + 1, np.eye(4)), str(path))
    return path


def _spectra(path: Path) -> Path:
    rng = np.random.default_rng(0)
    write_spectra(path, SpectraSet(rng.random((20, 8)).astype(np.float32), np.linspace(500, 700, 8),
                                   rng.integers(0, 2, 20), ["a", "b"]))
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(result, *fragments: str) -> None:
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError), repr(result.exception)
    for fragment in fragments:
        assert fragment in str(result.exception), str(result.exception)


def test_no_command_writes_over_its_input_file(tmp_path):
    """The tour's data-loss cases: the same path, a hard link, a symbolic link, the mask, and a
    suffix that would have been added silently. The model folder need not be valid: the check
    comes before anything is read."""
    scan, mask = _nifti(tmp_path / "in.nii.gz"), _nifti(tmp_path / "m.nii.gz")
    sim = _spectra(tmp_path / "sim.npz")
    os.link(scan, tmp_path / "hard.nii.gz")
    (tmp_path / "soft.nii.gz").symlink_to(scan)
    model = tmp_path / "model"
    model.mkdir()
    before = _snapshot(tmp_path)
    cases = [
        (["harmonize", "apply", str(model), str(scan), "--out", str(scan)], "never overwrites an input"),
        (["harmonize", "apply", str(model), str(scan), "--out", str(tmp_path / "hard.nii.gz")], "same file"),
        (["harmonize", "apply", str(model), str(scan), "--out", str(tmp_path / "soft.nii.gz")], "same file"),
        (["harmonize", "apply", str(model), str(scan), "--mask", str(mask), "--out", str(mask)], "same file"),
        (["transfer", "apply", str(model), str(sim), "--out", str(sim)], "same file"),
        (["transfer", "apply", str(model), str(sim), "--out", str(tmp_path / "sim")], "never adds a suffix"),
        (["transfer", "simulate", "--n", "5", "--out", str(tmp_path / "sim")], "never adds a suffix"),
        (["synthesize", "encode", str(model), str(scan), "--out", str(tmp_path / "z.npy"),
          "--reconstruction", str(scan)], "same file"),
        (["synthesize", "encode", str(model), str(scan), "--out", str(tmp_path / "z2.npy"),
          "--reconstruction", str(tmp_path / "z2.npy")], "must end in .nii"),
        (["harmonize", "apply", str(model), str(scan), "--out", str(model / "x.nii.gz")], "inside the input"),
        (["harmonize", "apply", str(model), str(scan), "--out", str(sim / "x.nii.gz")], "is a file"),
    ]
    for args, message in cases:
        _refused(runner.invoke(app, args), message)
        assert _snapshot(tmp_path) == before, args
    assert not (tmp_path / "z.npy").exists() and not (tmp_path / "z2.npy").exists()


def test_check_output_file_accepts_a_new_name_and_refuses_a_folder(tmp_path):
    scan = _nifti(tmp_path / "in.nii.gz")
    assert check_output_file(tmp_path / "out.nii.gz", (scan,), suffixes=(".nii.gz",)) == tmp_path / "out.nii.gz"
    with pytest.raises(InputError, match="is a folder"):
        check_output_file(tmp_path, (scan,))


def test_output_folders_never_replace_the_users_files(tmp_path):
    """`gap A B --out A`, and a report folder holding a user's report.html or metrics.json."""
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        _nifti(folder / "t1.nii.gz")
    user = tmp_path / "user"
    user.mkdir()
    (user / "report.html").write_text("my report")
    (user / "metrics.json").write_text("{}")
    before = _snapshot(tmp_path)
    _refused(runner.invoke(app, ["gap", str(a), str(b), "--out", str(a)]), "inside the input folder")
    _refused(runner.invoke(app, ["gap", str(a), str(b), "--out", str(user)]), "not written by medgap")
    _refused(runner.invoke(app, ["gap", str(a), str(b), "--out", str(user), "--overwrite"]), "not written by medgap")
    _refused(runner.invoke(app, ["demo", "--out", str(user), "--only", "bogus"]), "unknown demo section")
    assert _snapshot(tmp_path) == before


def test_staged_folder_moves_everything_at_the_end_and_replaces_only_its_own_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with staged_output_folder(out, names=("a.txt",)) as staging:
        (staging / "a.txt").write_text("1")
        (staging / "sub").mkdir()
        (staging / "sub" / "b.txt").write_text("2")
        assert not (out / "a.txt").exists()  # nothing visible before the end
    assert (out / "a.txt").read_text() == "1" and (out / "sub" / "b.txt").read_text() == "2"
    assert json.loads((out / MANIFEST).read_text())["entries"] == ["a.txt", "sub"]
    with pytest.raises(InputError, match="--overwrite"):  # a second run is refused before any work
        with staged_output_folder(out, names=("a.txt",)):
            pytest.fail("the body must not run")
    with staged_output_folder(out, overwrite=True) as staging:
        (staging / "a.txt").write_text("3")
    assert (out / "a.txt").read_text() == "3" and (out / "sub" / "b.txt").exists()
    with pytest.raises(InputError, match="notes.txt: exists and was not written by medgap"):
        with staged_output_folder(out, overwrite=True) as staging:  # found only at the end: nothing moves
            (staging / "a.txt").write_text("4")
            (staging / "notes.txt").write_text("theirs")
    assert (out / "notes.txt").read_text() == "mine" and (out / "a.txt").read_text() == "3"
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "a.txt", "notes.txt", "sub"])


def test_a_failed_command_leaves_no_folder_and_no_staging(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with staged_output_folder(out) as staging:
            (staging / "half.txt").write_text("x")
            raise RuntimeError("disk full")
    assert not out.exists()
    out.mkdir()
    dead = out / ".medgap-staging-999999999.abc"  # a SIGKILLed run's staging folder
    dead.mkdir()
    with staged_output_folder(out) as staging:
        (staging / "x.txt").write_text("1")
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "x.txt"])
