"""What medgap guarantees about users' files: no data loss, corrupt input refused, safe model folders."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medgap.cli import app
from medgap.errors import InputError, ModelFolderError
from medgap.io import SpectraSet, list_files, read_nifti, read_spectra, write_nifti, write_spectra
from medgap.modelio import check_output_folder, load_model, save_model
from medgap.training.rundir import RunFolder

from folder_helpers import edit_nifti_header, rewrite_manifest

runner = CliRunner()


def _nifti(path: Path, shape=(6, 5, 4), dtype=np.float32, affine=None) -> Path:
    data = np.arange(np.prod(shape), dtype=dtype).reshape(shape) + 1
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine), str(path))
    return path


def _spectra(path: Path, n=20, c=8) -> Path:
    rng = np.random.default_rng(0)
    write_spectra(path, SpectraSet(rng.random((n, c)).astype(np.float32), np.linspace(500, 700, c),
                                   rng.integers(0, 2, n), ["a", "b"]))
    return path


def _refused(result, *fragments: str) -> None:
    """A CLI result that ended in medgap's own input error, whose message holds ``fragments``."""
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError), repr(result.exception)
    for fragment in fragments:
        assert fragment in str(result.exception), str(result.exception)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------- 1. data loss

def test_train_refuses_an_output_folder_holding_the_users_files(tmp_path):
    site = tmp_path / "site_a"
    site.mkdir()
    _nifti(site / "sub-01_T1w.nii.gz")
    (site / "notes.txt").write_text("my notes")
    sim, real = _spectra(site / "sim.npz"), _spectra(site / "real.npz")
    before = _snapshot(site)
    cases = [
        ["harmonize", "train", str(site / "sub-01_T1w.nii.gz"), "--steps", "2", "--out", str(site)],
        ["transfer", "train", "--sim", str(sim), "--real", str(real), "--out", str(site)],
        ["synthesize", "train", str(site / "sub-01_T1w.nii.gz"), "--iterations", "2", "--out", str(site)],
    ]
    for args in cases:
        _refused(runner.invoke(app, args), "not a medgap model folder")
        assert _snapshot(site) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site_a"]  # no run folders left beside it


def test_model_folders_are_replaced_only_when_they_are_the_same_methods_and_overwrite_is_asked(tmp_path):
    folder = save_model(tmp_path / "m", method="transfer", config={"a": 1}, weights={"w": torch.nn.Linear(2, 2)})
    check_output_folder(tmp_path / "absent", "transfer")
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty", "transfer")
    with pytest.raises(InputError, match="'transfer' model folder, not a 'harmonize' one"):
        check_output_folder(folder, "harmonize", overwrite=True)
    with pytest.raises(InputError, match="--overwrite"):
        save_model(folder, method="transfer", config={"a": 2}, weights={"w": torch.nn.Linear(2, 2)})
    save_model(folder, method="transfer", config={"a": 2}, weights={"w": torch.nn.Linear(2, 2)}, overwrite=True)
    (folder / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="mine.txt"):
        save_model(folder, method="transfer", config={"a": 3}, weights={"w": torch.nn.Linear(2, 2)}, overwrite=True)
    assert (folder / "mine.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        check_output_folder(tmp_path / "file", "transfer")


# ---------------------------------------------------------------------------------------- 2-3. corrupt input

def test_gzip_crc_mismatch_truncation_and_trailing_garbage_are_refused(tmp_path):
    good = _nifti(tmp_path / "good.nii.gz")
    raw = good.read_bytes()
    crc = bytearray(raw)
    crc[-8] ^= 0xFF  # the trailer's CRC32: every data byte still decodes
    (tmp_path / "crc.nii.gz").write_bytes(bytes(crc))
    (tmp_path / "short.nii.gz").write_bytes(raw[:-6])
    (tmp_path / "tail.nii.gz").write_bytes(raw + b"garbage")
    (tmp_path / "plain.nii.gz").write_bytes(gzip.decompress(raw))
    assert read_nifti(good).shape == (6, 5, 4)
    plain = gzip.decompress(raw)  # a valid multi-member stream (as `cat a.gz b.gz` makes) is read whole
    (tmp_path / "multi.nii.gz").write_bytes(gzip.compress(plain[:500]) + gzip.compress(plain[500:]))
    np.testing.assert_array_equal(read_nifti(tmp_path / "multi.nii.gz").data, read_nifti(good).data)
    for name, fragment in [("crc", "corrupt gzip"), ("short", "truncated"), ("tail", "trailing garbage"),
                           ("plain", "not gzip")]:
        with pytest.raises(InputError, match=fragment) as err:
            read_nifti(tmp_path / f"{name}.nii.gz")
        assert f"{name}.nii.gz" in str(err.value)
    _refused(runner.invoke(app, ["inspect", str(tmp_path / "crc.nii.gz")]), "crc.nii.gz")


def _bomb_header() -> bytes:
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 1024))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    return header.binaryblock + b"\0" * 4


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_header_declaring_more_than_the_file_holds_allocates_nothing(tmp_path, suffix):
    path = tmp_path / f"bomb{suffix}"
    blob = _bomb_header()
    path.write_bytes(gzip.compress(blob) if suffix == ".nii.gz" else blob)
    # uncompressed: more than the file holds; compressed: first a ratio no real image reaches
    problem = "truncated: the header declares 4294967648 bytes" if suffix == ".nii" else "compression ratio above"
    tracemalloc.start()
    with pytest.raises(InputError, match=problem):
        read_nifti(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50e6
    for args in (["inspect", str(path)], ["synthesize", "train", str(path), "--out", str(tmp_path / "m")]):
        _refused(runner.invoke(app, args), path.name, problem.split(":")[0])


def _npz_with_declared_shape(path: Path, shape) -> Path:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("spectra.npy", buf.getvalue() + b"\0" * 64)
        wl = io.BytesIO()
        np.save(wl, np.linspace(500, 700, 8))
        archive.writestr("wavelengths.npy", wl.getvalue())
    return path


def test_npz_bombs_truncation_and_empty_files_are_refused(tmp_path):
    bomb = _npz_with_declared_shape(tmp_path / "bomb.npz", (1_000_000, 1_000_000))
    with pytest.raises(InputError, match="declares shape \\(1000000, 1000000\\)"):
        read_spectra(bomb)
    good = _spectra(tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "zero.npz").write_bytes(b"")
    flipped = bytearray(good)
    flipped[200] ^= 0x55  # inside the first entry's compressed data
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    for name in ("cut", "zero", "flip", "bomb"):
        path = str(tmp_path / f"{name}.npz")
        for args in (["inspect", path], ["gap", path, path, "--out", str(tmp_path / "g")],
                     ["transfer", "train", "--sim", path, "--real", path, "--out", str(tmp_path / f"m{name}")],
                     ["transfer", "apply", str(tmp_path / "no-model"), path, "--out", str(tmp_path / "o.npz")]):
            result = runner.invoke(app, args)
            assert result.exit_code != 0 and isinstance(result.exception, InputError), (args, result.exception)


def test_bad_geometry_and_voxel_types_are_refused(tmp_path):
    vol = np.ones((6, 5, 4), np.float32)

    def save(name, data=vol, affine=np.eye(4), **fields):
        path = tmp_path / name
        nib.save(nib.Nifti1Image(data, affine), str(path))
        return edit_nifti_header(path, **fields)

    nan_sform = {f"srow_{a}": [np.nan] * 4 for a in "xyz"}
    cases = {
        "zero.nii": (save("zero.nii", sform_code=0, qform_code=0, pixdim=[1, 0, 0, 0, 1, 1, 1, 1]), "geometry"),
        "zeros.nii": (save("zeros.nii", **{f"srow_{a}": [0.0] * 4 for a in "xyz"}), "singular"),
        "nans.nii": (save("nans.nii", **nan_sform), "NaN"),
        "nanq.nii": (save("nanq.nii", sform_code=0, qform_code=1, quatern_b=np.nan), "NaN or Inf"),
        "nanpix.nii": (save("nanpix.nii", sform_code=0, qform_code=0, pixdim=[1, np.nan, 1, 1, 1, 1, 1, 1]), "geometry"),
        "huge.nii": (save("huge.nii", affine=np.diag([1e30, 1, 1, 1])), "voxel size"),
        "complex.nii": (save("complex.nii", vol.astype(np.complex64)), "complex"),
    }
    for name, (path, fragment) in cases.items():
        with pytest.raises(InputError, match=fragment) as err:
            read_nifti(path)
        assert name in str(err.value)
        _refused(runner.invoke(app, ["inspect", str(path)]), name)


# ---------------------------------------------------------------------------------------- 4-5. model folders

def test_model_folders_read_only_their_own_regular_files(tmp_path):
    folder = save_model(tmp_path / "m", method="transfer", config={"a": 1}, weights={"w": torch.nn.Linear(2, 2)})
    outside = save_model(tmp_path / "other", method="transfer", config={"a": 1}, weights={"w": torch.nn.Linear(2, 2)})
    manifest = json.loads((folder / "manifest.json").read_text())

    def with_manifest(entries):
        (folder / "manifest.json").write_text(json.dumps(entries))

    attempts = {
        "/dev/zero": {**manifest, "/dev/zero": {"sha256": "0" * 64, "bytes": 0}},
        "../other": {**manifest, "../other/w.safetensors": manifest["w.safetensors"]},
        "list": [1, 2],
        "no bytes": {k: {"sha256": v["sha256"]} for k, v in manifest.items()},
    }
    for what, entries in attempts.items():
        with_manifest(entries)
        start = time.perf_counter()
        with pytest.raises(ModelFolderError):
            load_model(folder, method="transfer")
        assert time.perf_counter() - start < 5, what
    with_manifest(manifest)
    load_model(folder, method="transfer")
    # a symlink inside the folder that leads outside it
    (folder / "w.safetensors").unlink()
    (folder / "w.safetensors").symlink_to(outside / "w.safetensors")
    with pytest.raises(ModelFolderError, match="symbolic link"):
        load_model(folder, method="transfer")
    (folder / "w.safetensors").unlink()
    (folder / "w.safetensors").write_bytes((outside / "w.safetensors").read_bytes())
    # config.json's weights naming a file elsewhere, with the manifest made to match
    meta = json.loads((folder / "config.json").read_text())
    meta["weights"] = ["../other/w"]
    (folder / "config.json").write_text(json.dumps(meta))
    rewrite_manifest(folder)
    with pytest.raises(ModelFolderError, match="not a file listed"):
        load_model(folder, method="transfer")
    (folder / "config.json").write_text("[1, 2]")
    rewrite_manifest(folder)
    with pytest.raises(ModelFolderError, match="must be a JSON object"):
        load_model(folder, method="transfer")


def test_config_that_does_not_fit_the_weights_is_a_clear_error(tmp_path):
    from medgap.harmonize.api import Harmonizer
    from medgap.harmonize.config import HarmonizeConfig
    from medgap.harmonize.model import SliceFlow

    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=["flow.hidden=8", "flow.steps=1", "flow.levels=1"])
    model = SliceFlow.from_config(cfg.flow, cfg.data.template_bins)
    folder = save_model(tmp_path / "h", method="harmonize", config=cfg, weights={"flow": model})
    Harmonizer.load(folder, device="cpu")
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["flow"]["hidden"] = 12
    (folder / "config.json").write_text(json.dumps(meta))
    rewrite_manifest(folder)
    with pytest.raises(ModelFolderError, match="weights do not fit"):
        Harmonizer.load(folder, device="cpu")


# ---------------------------------------------------------------------------------------- 6. resume rules

def _tiny_transfer(tmp_path):
    from medgap.transfer.config import TransferConfig

    sim, real = read_spectra(_spectra(tmp_path / "sim.npz", n=64)), read_spectra(_spectra(tmp_path / "real.npz", n=64))
    cfg = TransferConfig.from_preset("cpu-small", overrides=["train.epochs=1", "hsi.hidden=8", "hsi.n_blocks=2",
                                                             "hsi.batch_size=32", "hsi.disc_hidden=8"])
    return sim, real, cfg


def test_resume_only_the_same_run_and_never_two_at_once(tmp_path):
    from medgap.training.contract import run_folder
    from medgap.transfer.trainer import train

    sim, real, cfg = _tiny_transfer(tmp_path)
    out = tmp_path / "m"
    train(cfg, (sim, real), out, progress=False)
    other_data = SpectraSet(real.spectra * 1.5, real.wavelengths)
    for kwargs, fragment in [({"real": other_data}, "the training data"), ({"cfg": cfg.replace(train={"seed": 7})}, "train.seed"),
                             ({"cfg": cfg.replace(hsi={"lr": 1e-5})}, "hsi.lr")]:
        args = {"sim": sim, "real": real, "cfg": cfg, **kwargs}
        with pytest.raises(InputError, match=f"another run.*{fragment}.*--no-resume"):
            train(args["cfg"], (args["sim"], args["real"]), out, progress=False, overwrite=True)
    leftover = run_folder(out) / "checkpoints" / ".step-00000009.host-999999999.abc.tmp"  # a SIGKILLed checkpoint write
    leftover.mkdir()
    train(cfg.replace(train={"seed": 7}), (sim, real), out, progress=False, overwrite=True, resume=False)  # starts fresh
    assert not leftover.exists()  # --no-resume clears the run's hidden temporaries too
    record = json.loads((run_folder(out) / "run.json").read_text())
    assert record["settings"]["train"]["seed"] == 7
    holder = RunFolder(run_folder(out), "transfer", record["settings"], record["data_sha256"]).open()
    try:
        with pytest.raises(InputError, match="another training is writing here"):
            train(cfg.replace(train={"seed": 7}), (sim, real), out, progress=False, overwrite=True)
    finally:
        holder.close()
    (run_folder(out) / "run.json").write_text("{broken")
    with pytest.raises(InputError, match="unreadable run record.*--no-resume"):
        train(cfg.replace(train={"seed": 7}), (sim, real), out, progress=False, overwrite=True)
    train(cfg, (sim, real), out, progress=False, overwrite=True, resume=False)
    assert json.loads((run_folder(out) / "run.json").read_text())["settings"]["train"]["seed"] == cfg.train.seed
    (tmp_path / "x.run").mkdir()
    (tmp_path / "x.run" / "thesis.tex").write_text("mine")
    with pytest.raises(InputError, match="not written by a medgap training"):
        train(cfg, (sim, real), tmp_path / "x", progress=False, resume=False)
    assert (tmp_path / "x.run" / "thesis.tex").read_text() == "mine"


# ---------------------------------------------------------------------------------------- 7. leftovers

_WRITER = """
import signal, sys, time
import medgap.cli
from medgap.io import atomic_path
signal.signal(signal.SIGTERM, medgap.cli._raise_terminated)
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"partial")
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_writes_leave_nothing_behind(tmp_path, sig):
    target = tmp_path / "out.nii.gz"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == (128 + sig if sig == signal.SIGTERM else -sig)
    left = [p.name for p in tmp_path.iterdir()]
    if sig == signal.SIGTERM:
        assert left == []
    else:  # nothing can run on SIGKILL: the next write to the same output removes the dead writer's file
        assert len(left) == 1 and left[0].startswith(".out.nii.gz.")
        assert list_files(tmp_path, lambda p: True) == []  # and folder readers never see it
        write_nifti(target, np.ones((2, 2, 2)))
        assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_folder_inputs_skip_hidden_files(tmp_path):
    from medgap.synthesize.data import find_volumes

    _nifti(tmp_path / "a.nii.gz")
    (tmp_path / ".a.nii.gz.host-1.x.tmp.nii.gz").write_bytes(b"partial")
    (tmp_path / ".git").mkdir()
    _nifti(tmp_path / ".git" / "b.nii.gz")
    assert [p.name for p in find_volumes([tmp_path])] == ["a.nii.gz"]


# ---------------------------------------------------------------------------------------- 8. permissions

@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                         (0o002, 0o664, 0o775)])
def test_outputs_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        out = write_nifti(tmp_path / "o.nii.gz", np.ones((2, 2, 2)))
        folder = save_model(tmp_path / "m", method="x", config={}, weights={"w": torch.nn.Linear(1, 1)})
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == file_mode
    assert stat.S_IMODE(folder.stat().st_mode) == dir_mode
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {file_mode}
    os.chmod(out, 0o640)
    write_nifti(out, np.zeros((2, 2, 2)))
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # writing over a file keeps its mode


def test_output_folders_that_are_files_and_inputs_that_are_pipes_are_refused(tmp_path):
    volume = _nifti(tmp_path / "t1.nii.gz")
    _refused(runner.invoke(app, ["gap", str(volume), str(volume), "--out", str(volume)]), "not a folder")
    fifo = tmp_path / "pipe.nii.gz"
    os.mkfifo(fifo)
    from medgap.harmonize.data import load_for_harmonize

    with pytest.raises(InputError, match="not a regular file"):  # opening a pipe would wait forever
        load_for_harmonize(fifo)


@pytest.mark.parametrize("stage", ["no apt", "download fails", "wrong package"])
def test_head_ct_install_failures_leave_nothing_behind(tmp_path, monkeypatch, capsys, stage):
    """No apt, a failed `apt-get download` (offline, no such package) or a package with another
    checksum: a message or a clear error, and no file in the data folder."""
    import shutil

    import medgap.data.install as install

    monkeypatch.setattr(shutil, "which", lambda name: None if stage == "no apt" else f"/usr/bin/{name}")

    def fake_run(cmd, cwd=None, **kwargs):
        if stage == "wrong package":
            open(f"{cwd}/invesalius-examples_1.0_all.deb", "wb").write(b"not the package")
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package")

    monkeypatch.setattr(subprocess, "run", fake_run)
    dest = tmp_path / "data"
    if stage == "wrong package":
        with pytest.raises(RuntimeError, match="unexpected SHA-256"):
            install.install_head_ct(dest)
    else:
        assert install.install_head_ct(dest) is None
        assert "not installed" in capsys.readouterr().err
    assert list(dest.iterdir()) == []
