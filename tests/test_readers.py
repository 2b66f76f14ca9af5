"""NRRD, MetaImage and DICOM series read through SimpleITK: geometry and values as SimpleITK sees them."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from medgap.cli import app
from medgap.errors import InputError
from medgap.io import read_volume, write_nifti

runner = CliRunner()
DIRECTION = np.array([[1.0, 0.0, 0.0], [0.0, 0.8, -0.6], [0.0, 0.6, 0.8]])  # oblique: a tilted gantry


def _image(dtype=np.int16) -> sitk.Image:
    arr = (np.arange(5 * 6 * 7).reshape(5, 6, 7) % 200 - 100).astype(dtype)  # (Z, Y, X)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.9, 2.5))
    img.SetOrigin((10.0, -20.0, 30.0))
    img.SetDirection(DIRECTION.flatten().tolist())
    return img


def _write_dicom_series(img: sitk.Image, folder: Path, uid: str, extra: dict | None = None, skip=()) -> None:
    folder.mkdir(exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    cosines = "\\".join(str(v) for v in (*DIRECTION[:, 0], *DIRECTION[:, 1]))
    for k in range(img.GetDepth()):
        if k in skip:
            continue
        piece = img[:, :, k]
        tags = {"0008|0060": "CT", "0020|000e": uid, "0020|000d": uid + ".1", "0020|0037": cosines,
                "0020|0032": "\\".join(map(str, img.TransformIndexToPhysicalPoint((0, 0, k)))),
                "0020|0013": str(k), "0018|0050": "2.5", "0020|0011": uid.rsplit(".", 1)[1], **(extra or {})}
        for tag, value in tags.items():
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid[-3:]}_{k:03d}.dcm"))
        writer.Execute(piece)


def _corners_match(volume, reference: sitk.Image) -> None:
    """World coordinates of the 8 corner voxels equal SimpleITK's own (LPS -> RAS)."""
    size = reference.GetSize()
    for corner in itertools.product(*[(0, n - 1) for n in size]):
        lps = np.array(reference.TransformIndexToPhysicalPoint(corner))
        ras = volume.affine @ np.array([*corner, 1.0])
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-4)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd", ".nhdr"])
def test_itk_files_read_with_simpleitks_geometry_and_values(tmp_path, suffix):
    img = _image()
    path = tmp_path / f"v{suffix}"
    sitk.WriteImage(img, str(path))
    vol = read_volume(path)
    reference = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(vol.data, sitk.GetArrayFromImage(reference).transpose(2, 1, 0))
    _corners_match(vol, reference)
    assert vol.spacing == pytest.approx((0.8, 0.9, 2.5))
    # results are NIfTI on the same grid
    out = write_nifti(tmp_path / "out.nii.gz", vol.data, like=vol)
    back = read_volume(out)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0 and f"{suffix[1:]} volume" in result.output


def test_dicom_series_folder_reads_in_slice_order_and_several_series_must_be_chosen(tmp_path):
    img = _image()
    folder = tmp_path / "dicom"
    _write_dicom_series(img, folder, "1.2.826.0.1.3680043.2.1125.1.101")
    vol = read_volume(folder)
    np.testing.assert_array_equal(vol.data, sitk.GetArrayFromImage(img).transpose(2, 1, 0))
    _corners_match(vol, img)
    _write_dicom_series(img, folder, "1.2.826.0.1.3680043.2.1125.1.202")
    with pytest.raises(InputError, match="holds 2 DICOM series"):
        read_volume(folder)
    chosen = read_volume(folder, series="1.2.826.0.1.3680043.2.1125.1.202")
    np.testing.assert_array_equal(chosen.data, vol.data)
    np.testing.assert_array_equal(read_volume(folder, series="202").data, vol.data)  # by series number
    with pytest.raises(InputError, match="no DICOM series '7'"):
        read_volume(folder, series="7")


def test_corrupt_and_unknown_volumes_are_refused(tmp_path):
    path = tmp_path / "v.nrrd"
    sitk.WriteImage(_image(), str(path))
    raw = path.read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(raw[: len(raw) - 50])
    (tmp_path / "bomb.mha").write_text("ObjectType = Image\nNDims = 3\nDimSize = 4096 4096 4096\n"
                                       "ElementType = MET_FLOAT\nElementDataFile = LOCAL\n")
    (tmp_path / "empty").mkdir()
    for name, fragment in [("cut.nrrd", "cannot read"), ("bomb.mha", "more than"), ("empty", "no DICOM series"),
                           ("x.txt", "does not exist")]:
        with pytest.raises(InputError, match=fragment):
            read_volume(tmp_path / name)


def test_ct_series_reads_in_hounsfield_units_exactly(tmp_path):
    hu = (np.arange(5 * 6 * 7).reshape(5, 6, 7) * 10 - 1024).astype(np.int16)  # -1024 .. 1066 HU
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing((0.8, 0.9, 2.5))
    img.SetOrigin((10.0, -20.0, 30.0))
    img.SetDirection(DIRECTION.flatten().tolist())
    _write_dicom_series(img, tmp_path / "ct", "1.2.826.0.1.3680043.2.1125.1.303",
                        {"0028|1052": "-1024", "0028|1053": "1"})  # stored values are HU + 1024
    vol = read_volume(tmp_path / "ct")
    np.testing.assert_array_equal(vol.data, hu.transpose(2, 1, 0).astype(np.float32))


def test_irregular_series_and_missing_detached_data_are_refused(tmp_path):
    img = _image()
    _write_dicom_series(img, tmp_path / "gap", "1.2.826.0.1.3680043.2.1125.1.404", skip=(2,))
    with pytest.raises(InputError, match="gap.*missing slices"):
        read_volume(tmp_path / "gap")
    _write_dicom_series(img, tmp_path / "tilted", "1.2.826.0.1.3680043.2.1125.1.505")
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    odd = img[:, :, 0]
    for tag, value in {"0008|0060": "CT", "0020|000e": "1.2.826.0.1.3680043.2.1125.1.505", "0020|0013": "9",
                       "0020|0037": "1\\0\\0\\0\\1\\0", "0020|0032": "0\\0\\99"}.items():
        odd.SetMetaData(tag, value)
    writer.SetFileName(str(tmp_path / "tilted" / "odd.dcm"))
    writer.Execute(odd)
    with pytest.raises(InputError, match="inconsistent orientations"):
        read_volume(tmp_path / "tilted")
    sitk.WriteImage(_image(), str(tmp_path / "v.nhdr"))
    for data in tmp_path.glob("v.raw*"):
        data.unlink()
    with pytest.raises(InputError, match="v.nhdr"):
        read_volume(tmp_path / "v.nhdr")


def _pydicom_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name))  # bundled in the pydicom wheel: no download


def test_real_ct_slice_reads_in_hu_with_simpleitks_geometry(tmp_path):
    import shutil

    import pydicom

    folder = tmp_path / "ct"
    folder.mkdir()
    shutil.copy(_pydicom_file("CT_small.dcm"), folder / "CT_small.dcm")
    vol = read_volume(folder)
    ds = pydicom.dcmread(folder / "CT_small.dcm")
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol.data[:, :, 0], hu.T)  # (rows, columns) -> (X = column, Y = row)
    assert vol.data.min() < -800  # air in HU, not stored values
    _corners_match(vol, sitk.ReadImage(str(folder / "CT_small.dcm")))


def test_dicomdir_series_are_listed_chosen_and_checked():
    import pydicom

    dicomdir = _pydicom_file("CT_small.dcm").parent / "dicomdirtests" / "DICOMDIR"
    with pytest.raises(InputError, match="holds 13 DICOM series"):
        read_volume(dicomdir)
    mr = "1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.6"
    vol = read_volume(dicomdir, series=mr)
    assert vol.shape == (16, 16, 5)
    from medgap.io import dicom_series

    slices = [pydicom.dcmread(f) for f in dicom_series(dicomdir)[mr]]
    normal = np.cross(*np.reshape(np.asarray(slices[0].ImageOrientationPatient, float), (2, 3)))
    slices.sort(key=lambda d: float(np.dot(np.asarray(d.ImagePositionPatient, float), normal)))
    from pydicom.pixels import apply_modality_lut

    expected = np.stack([apply_modality_lut(d.pixel_array, d).T for d in slices], axis=-1)  # rescale applied
    np.testing.assert_array_equal(vol.data, expected)
    with pytest.raises(InputError, match="inconsistent orientations"):  # a three-plane localizer
        read_volume(dicomdir, series="1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.2")


def test_cli_picks_a_series(tmp_path):
    dicomdir = _pydicom_file("CT_small.dcm").parent / "dicomdirtests" / "DICOMDIR"
    result = runner.invoke(app, ["inspect", str(dicomdir)])
    assert isinstance(result.exception, InputError) and "series number" in str(result.exception)
    result = runner.invoke(app, ["inspect", str(dicomdir), "--series", "1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.6"])
    assert result.exit_code == 0 and "dicom series volume" in result.output and "16," in result.output
