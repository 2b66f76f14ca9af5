"""Preprocessing: isotropic resampling, intensity mapping, cube, cache, clear errors."""

import nibabel as nib
import numpy as np
import pytest
import torch

from medgap.errors import InputError
from medgap.io import Volume, read_nifti
from medgap.synthesize.data import Augment, load_training_set, preprocess


def test_preprocess_keeps_aspect_ratio_and_maps_to_unit_range(tmp_path, tiny_cfg, make_vol):
    vol = read_nifti(make_vol(tmp_path / "a.nii.gz", shape=(40, 40, 10), spacing=(1.0, 1.0, 4.0)))
    prep = preprocess(vol, tiny_cfg)
    assert prep.data.shape == (32, 32, 32)
    assert prep.data.min() >= -1 and prep.data.max() <= 1
    # 40 mm extent in every axis after isotropic resampling: the blob stays round, not flattened.
    d = prep.data > 0
    extents = [np.ptp(np.nonzero(d)[i]) for i in range(3)]
    assert min(extents) / max(extents) > 0.7  # ignoring the spacing would give 10/40
    assert abs(prep.spacing_mm - 40 / 32) < 0.1


def test_ct_window_and_ct_without_hu_is_refused(tmp_path, tiny_cfg, make_vol):
    ct = tiny_cfg.replace(data={"modality": "ct"})
    prep = preprocess(read_nifti(make_vol(tmp_path / "ct.nii.gz", kind="ct")), ct)
    assert prep.data.min() == pytest.approx(-1, abs=0.05)  # air at -1000 HU is near the window floor
    raw = Volume(np.full((20, 20, 20), 1000, np.float32) + np.arange(20, dtype=np.float32), np.eye(4), path=tmp_path / "raw.nii")
    with pytest.raises(InputError, match="raw.nii.*Hounsfield"):
        preprocess(raw, ct)


def test_mixed_shapes_are_cached_as_memmap(tmp_path, tiny_cfg, make_vol):
    (tmp_path / "d").mkdir()
    make_vol(tmp_path / "d" / "a.nii.gz", shape=(30, 26, 20))
    make_vol(tmp_path / "d" / "b.nii.gz", shape=(20, 24, 28), spacing=(1.5, 1.5, 1.5), seed=1)
    with pytest.warns(UserWarning, match="2 volumes of 2 sizes, 2 spacings.*resampled.*one 32\\^3 cube"):
        ts = load_training_set([tmp_path / "d"], tiny_cfg, cache_dir=tmp_path / "cache", progress=False)
    assert ts.volumes.shape == (2, 32, 32, 32)
    again = load_training_set([tmp_path / "d"], tiny_cfg, cache_dir=tmp_path / "cache", progress=False)
    assert isinstance(again.volumes, np.memmap)
    assert np.allclose(np.asarray(again.volumes, np.float32), ts.volumes, atol=1e-3)



@pytest.mark.parametrize("damage", ["truncate", "other_shape", "bad_meta"])
def test_a_damaged_cache_is_rebuilt_not_half_read(tmp_path, tiny_cfg, make_vol, damage):
    (tmp_path / "d").mkdir()
    make_vol(tmp_path / "d" / "a.nii.gz", shape=(30, 26, 20))
    ts = load_training_set([tmp_path / "d"], tiny_cfg, cache_dir=tmp_path / "cache", progress=False)
    expected = np.asarray(ts.volumes, np.float32).copy()
    arr = next((tmp_path / "cache").glob("*.npy"))
    if damage == "truncate":
        arr.write_bytes(arr.read_bytes()[: arr.stat().st_size // 2])
    elif damage == "other_shape":
        np.save(arr, np.zeros((1, 16, 16, 16), np.float16))
    else:
        arr.with_suffix(".json").write_text("{not json")
    again = load_training_set([tmp_path / "d"], tiny_cfg, cache_dir=tmp_path / "cache", progress=False)
    assert np.allclose(np.asarray(again.volumes, np.float32), expected)
    assert list(again.labels) == [0]
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json", ".npy"]  # rebuilt, no leftovers

@pytest.mark.parametrize("shape,problem", [((20, 20), "2D"), ((10, 10, 10, 3), "4D")])
def test_wrong_dimensionality_is_refused(tmp_path, tiny_cfg, shape, problem):
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), str(path))
    with pytest.raises(InputError, match=f"bad.nii.gz.*{problem}"):
        load_training_set([path], tiny_cfg, progress=False)


def test_nan_and_empty_folder_are_refused(tmp_path, tiny_cfg, make_vol):
    data = np.ones((10, 10, 10), np.float32)
    data[2, 2, 2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(InputError, match="nan.nii.gz.*NaN"):
        load_training_set([tmp_path / "nan.nii.gz"], tiny_cfg, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no volumes"):
        load_training_set([tmp_path / "empty"], tiny_cfg, progress=False)


def test_augment_changes_volume_but_keeps_range():
    x = np.zeros((1, 32, 32, 32), np.float32) - 1
    x[:, 8:24, 8:24, 8:24] = 0.5
    import torch

    y = Augment(32, seed=0)(torch.from_numpy(x))
    assert y.shape == (1, 32, 32, 32) and y.min() >= -1 and y.max() <= 1
    assert (y - torch.from_numpy(x)).abs().mean() > 1e-3


def test_ct_augmentation_keeps_hounsfield_units(tiny_cfg):
    # CT intensities are absolute: augmentation moves anatomy, never the value of a tissue.
    x = np.full((1, 32, 32, 32), -1.0, np.float32)
    x[0, 8:24, 8:24, 8:24] = 0.3
    aug = Augment.for_config(tiny_cfg.replace(data={"modality": "ct", "augment": True}), seed=0)
    for _ in range(5):
        y = aug(torch.from_numpy(x)).numpy()
        inside = y[(y > 0.25) & (y < 0.35)]
        assert inside.size > 1000 and np.isclose(np.median(y[y > -0.9]), 0.3, atol=0.02)
    assert Augment.for_config(tiny_cfg.replace(data={"augment": False})) is None


def test_ct_among_mr_volumes_is_refused(tmp_path, tiny_cfg, make_vol):
    (tmp_path / "mixed").mkdir()
    make_vol(tmp_path / "mixed" / "a_mr.nii.gz", kind="mr", seed=0)
    make_vol(tmp_path / "mixed" / "b_ct.nii.gz", kind="ct", seed=1)
    with pytest.raises(InputError, match="b_ct.nii.gz.*--modality ct"):
        load_training_set([tmp_path / "mixed"], tiny_cfg, progress=False)
    with pytest.raises(InputError, match="a_mr.nii.gz.*not look like a CT"):
        load_training_set([tmp_path / "mixed"], tiny_cfg.replace(data={"modality": "ct"}), progress=False)
