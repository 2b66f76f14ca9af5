"""A hostile user's files and settings: each is refused with one line naming the file and the problem.

Classes (see docs/guarantees.md): NIfTI files whose header and data disagree, decompression bombs,
MetaImage headers reading outside their folder, volumes too small for a method, damaged
checkpoints, settings outside their range, and inputs given in the wrong role.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medgap.cli import app
from medgap.errors import ConfigError, InputError, ModelFolderError
from medgap.io import read_volume, write_nifti
from medgap.training.checkpoint import CheckpointManager

from folder_helpers import edit_nifti_header

runner = CliRunner()


def _nifti(path: Path, shape=(20, 20, 20), dtype=np.float32) -> Path:
    data = (np.arange(np.prod(shape)) % 97).astype(dtype).reshape(shape) + 1
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def _refused_everywhere(path: Path, fragment: str) -> None:
    """Refused by the reader and by the command line, in one line (no traceback)."""
    with pytest.raises(InputError, match=fragment):
        read_volume(path)
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code != 0 and isinstance(result.exception, InputError), repr(result.exception)
    assert path.name in str(result.exception) and "\n" not in str(result.exception)


# ------------------------------------------------------------------------- header vs data


def test_a_datatype_that_does_not_match_the_data_is_refused(tmp_path):
    # int16 declared over float32 voxels: nibabel would read garbage in +-32k
    _refused_everywhere(edit_nifti_header(_nifti(tmp_path / "dt.nii"), datatype=4, bitpix=16),
                        "more than the header declares")
    gz = tmp_path / "dt.nii.gz"
    gz.write_bytes(gzip.compress((tmp_path / "dt.nii").read_bytes()))
    _refused_everywhere(gz, "more than the header declares")


def test_extra_data_and_a_second_gzip_member_are_refused(tmp_path):
    path = _nifti(tmp_path / "extra.nii")
    path.write_bytes(path.read_bytes() + b"\0" * 100)
    _refused_everywhere(path, "100 bytes more than the header declares")
    good = _nifti(tmp_path / "good.nii")
    twice = tmp_path / "twice.nii.gz"
    twice.write_bytes(gzip.compress(good.read_bytes()) + gzip.compress(b"\1" * 64))
    _refused_everywhere(twice, "64 bytes more")


def test_header_fields_that_would_be_invented_or_misread_are_refused(tmp_path):
    # a qform without voxel sizes: nibabel would invent 1 mm
    _refused_everywhere(edit_nifti_header(_nifti(tmp_path / "q.nii"), sform_code=0, qform_code=1,
                                          pixdim=[1, 0, 0, 0, 1, 1, 1, 1]), "geometry is unknown")
    # the magic of a .hdr/.img pair in a single-file .nii
    _refused_everywhere(edit_nifti_header(_nifti(tmp_path / "m.nii"), magic=b"ni1"), "separate .img")
    _refused_everywhere(edit_nifti_header(_nifti(tmp_path / "s.nii"), scl_slope=np.inf), "scl_slope is inf")
    _refused_everywhere(edit_nifti_header(_nifti(tmp_path / "i.nii"), scl_slope=1.0, scl_inter=-np.inf),
                        "scl_inter is -inf")
    # NaN is nibabel's own "no scaling" and reads as the stored values (a deliberate acceptance)
    vol = read_volume(edit_nifti_header(_nifti(tmp_path / "n.nii"), scl_slope=np.nan))
    assert vol.data.max() == 97


def test_files_written_by_nibabel_and_medgap_still_read(tmp_path):
    for name in ("a.nii", "a.nii.gz"):
        assert read_volume(_nifti(tmp_path / name)).shape == (20, 20, 20)
    write_nifti(tmp_path / "w.nii.gz", np.ones((17, 18, 19), np.float32))
    assert read_volume(tmp_path / "w.nii.gz").shape == (17, 18, 19)


# ------------------------------------------------------------------------- size ceilings


def _zeros_bomb(path: Path, side: int) -> Path:
    header = nib.Nifti1Header()
    header.set_data_shape((side, side, side))
    header.set_data_dtype(np.uint8)
    header.set_qform(np.eye(4), 1)
    header["vox_offset"] = 352
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as fh:
        fh.write(deflate.compress(header.binaryblock + b"\0" * 4))
        for _ in range(side):
            fh.write(deflate.compress(b"\0" * side * side))
        fh.write(deflate.flush())
    return path


def test_a_decompression_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    bomb = _zeros_bomb(tmp_path / "bomb.nii.gz", 256)  # 16 MiB of zeros in ~17 kB
    _refused_everywhere(bomb, "compression ratio above 500:1")
    monkeypatch.setenv("MEDGAP_MAX_INPUT_GB", "0.001")
    _refused_everywhere(bomb, "above MEDGAP_MAX_INPUT_GB=0.001")
    monkeypatch.setenv("MEDGAP_MAX_INPUT_GB", "1")  # the user says so: read it
    assert read_volume(bomb).shape == (256, 256, 256)


def test_an_input_larger_than_the_memory_is_refused(tmp_path, monkeypatch):
    from medgap.io import checks

    monkeypatch.setattr(checks, "_available_memory", lambda: 10_000)
    _refused_everywhere(_nifti(tmp_path / "big.nii"), "GB are available")


# ------------------------------------------------------------------------- detached headers


def test_metaimage_data_files_stay_in_the_header_folder_and_match_its_size(tmp_path):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.ones((10, 10, 10), np.int16)), str(tmp_path / "x.mhd"))
    assert read_volume(tmp_path / "x.mhd").shape == (10, 10, 10)
    header = (tmp_path / "x.mhd").read_text()
    (tmp_path / "foreign.raw").write_bytes(b"\1" * 5000)
    (tmp_path / "big.mhd").write_text(header.replace("x.raw", "foreign.raw"))
    _refused_everywhere(tmp_path / "big.mhd", "holds 5000 bytes where the header declares 2000")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "out.mhd").write_text(header.replace("x.raw", "../x.raw"))
    _refused_everywhere(tmp_path / "sub" / "out.mhd", "outside the header's folder")
    (tmp_path / "abs.mhd").write_text(header.replace("x.raw", "/etc/hostname"))
    _refused_everywhere(tmp_path / "abs.mhd", "outside the header's folder")


# ------------------------------------------------------------------------- minimum sizes


def test_each_method_refuses_volumes_too_small_for_it(tmp_path):
    from medgap.gap import measure_gap
    from medgap.harmonize.data import load_for_harmonize
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.synthesize.data import preprocess

    tiny = _nifti(tmp_path / "tiny.nii.gz", shape=(2, 2, 2))
    with pytest.raises(InputError, match="too small for harmonisation: at least 16 x 16 x 1"):
        load_for_harmonize(tiny)
    with pytest.raises(InputError, match="too small for HA-GAN"):
        preprocess(read_volume(tiny), SynthesizeConfig())
    with pytest.raises(InputError, match="too small for medgap gap"):
        measure_gap(tiny, tiny, permutations=10, bootstrap=20)
    result = runner.invoke(app, ["synthesize", "train", str(tiny), "--out", str(tmp_path / "m")])
    assert isinstance(result.exception, InputError) and "too small" in str(result.exception)
    # one 2D slice is a valid harmonisation input
    vol, _ = load_for_harmonize(_nifti(tmp_path / "slice.nii.gz", shape=(32, 32, 1)))
    assert vol.shape == (32, 32, 1)


# ------------------------------------------------------------------------- inputs in the wrong role


def test_an_image_given_as_a_mask_and_a_target_given_twice_are_refused(tmp_path):
    from medgap.harmonize.config import HarmonizeConfig
    from medgap.harmonize.data import load_for_harmonize
    from medgap.harmonize.train import load_training_set

    t1 = _nifti(tmp_path / "t1.nii.gz")
    with pytest.raises(InputError, match="t1.nii.gz: values from 1 to 97: a mask holds 0 and 1"):
        load_for_harmonize(t1, t1)
    empty = tmp_path / "empty.nii.gz"
    write_nifti(empty, np.zeros((20, 20, 20), np.float32))
    with pytest.raises(InputError, match="mask is empty"):
        load_for_harmonize(t1, empty)
    (tmp_path / "link.nii.gz").symlink_to(t1)
    with pytest.raises(InputError, match="the same target volume as"):
        load_training_set(HarmonizeConfig(), [t1, tmp_path / "link.nii.gz"])


# ------------------------------------------------------------------------- settings


@pytest.mark.parametrize("override", ["harmonize.iterations=1000000000000", "flow.hidden=1000000000",
                                      "train.lr=1000000", "restore.channels=[16,100000]"])
def test_harmonize_settings_outside_their_range_are_refused(override):
    from medgap.harmonize.config import HarmonizeConfig

    with pytest.raises(ConfigError, match=override.split("=")[0]):
        HarmonizeConfig.from_preset("cpu-small", overrides=[override])


@pytest.mark.parametrize("method, override", [("synthesize", "model.size=4096"), ("synthesize", "model.latent_dim=100000"),
                                              ("synthesize", "train.lr_d=10"), ("transfer", "hsi.hidden=1000000"),
                                              ("transfer", "train.epochs=10000000"), ("transfer", "pat.lr=5")])
def test_synthesize_and_transfer_settings_outside_their_range_are_refused(method, override):
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.transfer.config import TransferConfig

    config = SynthesizeConfig if method == "synthesize" else TransferConfig
    with pytest.raises(ConfigError, match=override.split("=")[0].split(".")[-1]):
        config.from_preset("cpu-small", overrides=[override])


def test_config_files_that_do_not_parse_are_one_line(tmp_path):
    from medgap.config import read_config_file

    bad = tmp_path / "bad.yaml"
    bad.write_text("flow:\n  hidden: [1, 2\n  steps: 3\n")
    with pytest.raises(InputError) as caught:
        read_config_file(bad)
    assert "bad.yaml: cannot parse config" in str(caught.value) and "line" in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="is a folder"):
        read_config_file(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(InputError, match="not a text file"):
        read_config_file(tmp_path / "bin.yaml")


# ------------------------------------------------------------------------- checkpoints


def _checkpoint(tmp_path: Path, step: int = 5):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 4)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 3)).sum().backward()
    opt.step()
    manager = CheckpointManager(tmp_path / "run")
    return manager, manager.save(step, {"net": net}, {"opt": opt}), net, opt


def _edit_state(folder: Path, **changes) -> None:
    state = json.loads((folder / "state.json").read_text())
    for key, value in changes.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    (folder / "state.json").write_text(json.dumps(state))


def _edit_tensors(folder: Path, **tensors) -> None:
    from safetensors.torch import load_file, save_file

    stored = load_file(str(folder / "tensors.safetensors"))
    stored.update({k.replace("__", "/"): v for k, v in tensors.items()})
    save_file(stored, str(folder / "tensors.safetensors"))


@pytest.mark.parametrize("damage, message", [
    (lambda f: _edit_state(f, optimizers=None), "lacks \\['optimizers'\\]"),
    (lambda f: _edit_state(f, step="abc"), "'abc' is not a count"),
    (lambda f: _edit_state(f, step=-5), "-5 is not a count"),
    (lambda f: _edit_state(f, step=7), "says step 7 in a folder named step-00000005"),
    (lambda f: _edit_tensors(f, rng__torch=torch.zeros(10, dtype=torch.uint8)), "torch RNG state"),
    (lambda f: _edit_tensors(f, rng__numpy=torch.zeros(624, dtype=torch.float32)), "NumPy RNG state"),
    (lambda f: _edit_tensors(f, optim__opt__0__exp_avg=torch.zeros(7, 7)), "has shape \\(7, 7\\)"),
    (lambda f: _edit_tensors(f, optim__opt__0__exp_avg=torch.full((4, 3), float("nan"))), "not finite"),
    (lambda f: _edit_tensors(f, module__net__weight=torch.full((4, 3), float("nan"))), "'weight' is not finite"),
    (lambda f: _edit_tensors(f, module__net__weight=torch.zeros(5, 3)), "'weight' has shape \\(5, 3\\)"),
])
def test_damaged_checkpoints_are_refused_before_they_are_loaded(tmp_path, damage, message):
    manager, folder, net, opt = _checkpoint(tmp_path)
    damage(folder)
    with pytest.raises(ModelFolderError, match=message):
        manager.restore({"net": net}, {"opt": opt})


def test_checkpoints_past_the_run_or_outside_it_are_refused(tmp_path):
    manager, folder, net, opt = _checkpoint(tmp_path, step=1_000_000)
    with pytest.raises(ModelFolderError, match="past the run's 600 steps"):
        manager.restore({"net": net}, {"opt": opt}, max_step=600)
    manager, _, net, opt = _checkpoint(tmp_path / "run2", step=5)
    _, other_folder, _, _ = _checkpoint(tmp_path / "other", step=10)
    (manager.directory / "step-00000010").symlink_to(other_folder)  # the latest is another run's
    with pytest.raises(ModelFolderError, match="symbolic link"):
        manager.restore({"net": net}, {"opt": opt})


def test_an_intact_checkpoint_still_restores(tmp_path):
    manager, folder, net, opt = _checkpoint(tmp_path)
    assert manager.restore({"net": net}, {"opt": opt}, max_step=5)[0] == 5


def test_a_transfer_model_folder_with_zero_spreads_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    from folder_helpers import rewrite_manifest
    from medgap.io import SpectraSet
    from medgap.transfer.apply import load_transfer
    from medgap.transfer.config import TransferConfig
    from medgap.transfer.trainer import train

    rng = np.random.default_rng(0)
    sets = [SpectraSet(rng.random((40, 6)).astype(np.float32) + 0.1, np.linspace(500, 600, 6)) for _ in range(2)]
    folder = tmp_path / "m"
    train(TransferConfig.from_preset("cpu-small", overrides=["method=coral"]), tuple(sets), folder, progress=False)
    stats = load_file(str(folder / "stats.safetensors"))
    stats["real_std"] = torch.zeros_like(stats["real_std"])
    save_file(stats, str(folder / "stats.safetensors"))
    rewrite_manifest(folder)
    with pytest.raises(ModelFolderError, match="real_std holds values that are not positive"):
        load_transfer(folder, device="cpu")
