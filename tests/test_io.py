import nibabel as nib
import numpy as np
import pytest

from medgap.errors import InputError
from medgap.io import (
    ImageSet,
    SpectraSet,
    Volume,
    atomic_path,
    read_images,
    read_nifti,
    read_spectra,
    write_images,
    write_nifti,
    write_spectra,
)


def oblique_affine():
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.75, 1.25, 2.5])  # float32-exact: NIfTI stores sform as float32
    aff[:3, 3] = [10.5, -20.25, 33.0]
    return aff


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_round_trip_keeps_data_affine_spacing(tmp_path, rng, suffix):
    data = rng.normal(size=(7, 9, 5)).astype(np.float32)
    aff = oblique_affine()
    src = tmp_path / f"in{suffix}"
    img = nib.Nifti1Image(data, aff)
    img.header.set_xyzt_units("mm")
    nib.save(img, src)
    vol = read_nifti(src)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_array_equal(vol.affine, aff)
    assert vol.spacing == (0.75, 1.25, 2.5)
    assert vol.orientation == "".join(nib.aff2axcodes(aff))
    out = write_nifti(tmp_path / f"out{suffix}", vol.data * 2, like=vol)
    back = read_nifti(out)
    np.testing.assert_array_equal(back.data, data * 2)
    np.testing.assert_array_equal(back.affine, aff)
    assert back.spacing == vol.spacing
    assert back.header.get_xyzt_units()[0] == "mm"


def test_trailing_singleton_dimension_is_a_volume(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 1), np.float32), np.eye(4)), tmp_path / "a.nii")
    assert read_nifti(tmp_path / "a.nii").shape == (4, 4, 4)


@pytest.mark.parametrize(
    "data, message",
    [
        (np.ones((5, 6), np.float32), "2D image"),
        (np.ones((4, 4, 4, 3), np.float32), "4D series"),
        (np.full((3, 3, 3), np.nan, np.float32), "NaN/Inf"),
        (np.zeros((0, 3, 3), np.float32), "empty"),
    ],
)
def test_bad_nifti_names_file_and_problem(tmp_path, data, message):
    path = tmp_path / "bad_scan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(InputError) as err:
        read_nifti(path)
    assert "bad_scan.nii.gz" in str(err.value)
    assert message in str(err.value)


def test_truncated_and_garbage_nifti(tmp_path, rng):
    good = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(rng.normal(size=(20, 20, 20)).astype(np.float32), np.eye(4)), good)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.nii"
    garbage.write_bytes(b"not a nifti header" * 10)
    for path in (truncated, garbage, tmp_path / "missing.nii"):
        with pytest.raises(InputError, match=path.name):
            read_nifti(path)


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.npz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []

    # a real writer failing midway: nibabel cannot store a complex128 array as float32 NaN-free
    vol = Volume(np.ones((3, 3, 3), np.float32))
    with pytest.raises(Exception):
        write_nifti(tmp_path / "x.nii.gz", np.array([[["a"]]]), like=vol)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_output(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old")
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise ValueError
    assert target.read_text() == "old"


def spectra_set(rng, n=12, c=5):
    return SpectraSet(
        spectra=rng.random((n, c)).astype(np.float32),
        wavelengths=np.linspace(500, 700, c),
        labels=np.arange(n) % 3,
        label_names=["artery", "vein", "skin"],
        groups=np.repeat(np.arange(4), n // 4),
    )


def test_spectra_round_trip(tmp_path, rng):
    s = spectra_set(rng)
    path = write_spectra(tmp_path / "s.npz", s)
    back = read_spectra(path)
    np.testing.assert_array_equal(back.spectra, s.spectra)
    np.testing.assert_array_equal(back.wavelengths, s.wavelengths)
    np.testing.assert_array_equal(back.labels, s.labels)
    assert back.label_names == s.label_names
    np.testing.assert_array_equal(back.groups, s.groups)


def test_images_round_trip(tmp_path, rng):
    s = ImageSet(rng.random((2, 3, 8, 6)), np.array([700.0, 750, 800]), rng.integers(0, 2, (2, 8, 6)), ["bg", "vessel"])
    back = read_images(write_images(tmp_path / "i.npz", s))
    np.testing.assert_array_equal(back.images, s.images.astype(np.float32))
    np.testing.assert_array_equal(back.segmentation, s.segmentation)
    assert back.label_names == ["bg", "vessel"]


BAD_SPECTRA = {
    "wrong_ndim": ({"spectra": np.ones((2, 3, 4)), "wavelengths": np.arange(3.0)}, "must be 2D"),
    "nan": ({"spectra": np.array([[1.0, np.nan]]), "wavelengths": np.array([1.0, 2.0])}, "NaN/Inf"),
    "empty": ({"spectra": np.ones((0, 3)), "wavelengths": np.arange(3.0)}, "empty"),
    "missing_key": ({"spectra": np.ones((2, 3))}, "missing key"),
    "wavelengths": ({"spectra": np.ones((2, 3)), "wavelengths": np.arange(4.0)}, "3 channels"),
    "labels_range": (
        {"spectra": np.ones((2, 3)), "wavelengths": np.arange(3.0), "labels": np.array([0, 5]),
         "label_names": np.array(["a", "b"])},
        "out of range",
    ),
    "pickled": ({"spectra": np.array([{"a": 1}], dtype=object), "wavelengths": np.arange(1.0)}, "pickle"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECTRA))
def test_bad_spectra_files(tmp_path, case):
    arrays, message = BAD_SPECTRA[case]
    path = tmp_path / f"{case}.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError) as err:
        read_spectra(path)
    assert f"{case}.npz" in str(err.value)
    assert message in str(err.value)


def test_truncated_npz(tmp_path, rng):
    path = write_spectra(tmp_path / "s.npz", spectra_set(rng, n=400, c=50))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(InputError, match="cut.npz"):
        read_spectra(cut)


def test_bad_images(tmp_path):
    np.savez(tmp_path / "seg.npz", images=np.ones((2, 3, 4, 4)), wavelengths=np.arange(3.0),
             segmentation=np.ones((2, 5, 4), int))
    with pytest.raises(InputError, match="seg.npz.*segmentation"):
        read_images(tmp_path / "seg.npz")
    np.savez(tmp_path / "ndim.npz", images=np.ones((3, 4, 4)), wavelengths=np.arange(3.0))
    with pytest.raises(InputError, match="ndim.npz.*4D"):
        read_images(tmp_path / "ndim.npz")
