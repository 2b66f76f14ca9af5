import numpy as np
import pytest
import torch

from medgap.data.sample import load_icbm152, resample_isotropic
from medgap.io import Volume
from medgap.metrics import dice, frechet_distance, iou, mmd2_unbiased, psnr, ssim
from medgap.metrics.features import VolumeFeatureExtractor


def test_icbm152_offline_at_two_resolutions():
    one = load_icbm152(1.0)
    assert one.t1.shape == (197, 233, 189) and one.t1.spacing == (1.0, 1.0, 1.0)
    assert 0.0 <= one.t1.data.min() and one.t1.data.max() <= 1.0
    brain = one.mask.data > 0
    # white matter is brighter than grey matter on T1
    assert one.t1.data[brain & (one.wm.data > 0.9)].mean() > one.t1.data[brain & (one.gm.data > 0.9)].mean() + 0.1
    two = load_icbm152(2.0)
    assert two.t1.spacing == pytest.approx((2.0, 2.0, 2.0), abs=0.02)
    centre_world = one.t1.affine @ np.array([98, 116, 94, 1.0])
    centre_voxel = np.linalg.solve(two.t1.affine, centre_world)[:3]
    assert np.allclose(centre_voxel, [49, 58, 47], atol=0.6)
    assert set(np.unique(two.mask.data)) == {0.0, 1.0}


def test_resample_keeps_world_corners(rng):
    vol = Volume(rng.random((10, 12, 8)).astype(np.float32), np.diag([2.0, 2.0, 3.0, 1.0]))
    out = resample_isotropic(vol, 1.0)
    far = np.array(out.shape) - 1
    np.testing.assert_allclose(out.affine @ np.r_[far, 1], vol.affine @ np.r_[np.array(vol.shape) - 1, 1], atol=1e-9)
    assert out.spacing == pytest.approx((1.0, 1.0, 1.0), abs=0.01)


def test_psnr_ssim_values(rng):
    x = rng.random((32, 32))
    assert psnr(x, x + 0.1) == pytest.approx(20.0, abs=1e-6)
    assert ssim(x, x) == pytest.approx(1.0)
    noisy = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    assert ssim(x, noisy) < 0.9
    mask = np.zeros_like(x, bool)
    mask[:16] = True
    y = x.copy()
    y[16:] = 0
    assert ssim(x, y, mask=mask) > ssim(x, y)
    assert psnr(x, y, mask=mask) == float("inf")
    stack = rng.random((3, 24, 24))
    assert ssim(stack, stack, stack=True) == pytest.approx(1.0)


def test_dice_iou():
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    assert dice(a, b) == 0.5 and iou(a, b) == pytest.approx(1 / 3)


def test_mmd_and_fid_separate_distributions(rng):
    a = rng.normal(size=(200, 4))
    b = rng.normal(size=(200, 4))
    c = rng.normal(loc=1.0, size=(200, 4))
    assert abs(mmd2_unbiased(a, b)) < 0.02 < mmd2_unbiased(a, c)
    assert frechet_distance(a, b) < 0.3 < frechet_distance(a, c)
    assert frechet_distance(a, c) == pytest.approx(4.0, rel=0.25)  # |mu|^2 = 4


def test_volume_features_are_fixed_and_discriminative(rng):
    vols = torch.as_tensor(rng.uniform(-1, 1, (4, 1, 24, 24, 24)), dtype=torch.float32)
    f1 = VolumeFeatureExtractor(input_size=32).features(vols)
    f2 = VolumeFeatureExtractor(input_size=32).features(vols)
    assert f1.shape == (4, 512)
    np.testing.assert_array_equal(f1, f2)
    smooth = torch.nn.functional.avg_pool3d(vols, 5, 1, 2)
    f3 = VolumeFeatureExtractor(input_size=32).features(smooth)
    assert np.linalg.norm(f1 - f3) > 1e-3 * np.linalg.norm(f1)


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        import os

        return (os.makedirs, ("pwned_by_pickle",))


def test_feature_weights_load_tensors_and_refuse_code_in_a_pickle(tmp_path, rng, monkeypatch):
    from safetensors.torch import save_file

    from medgap.errors import InputError

    monkeypatch.chdir(tmp_path)
    vols = torch.as_tensor(rng.uniform(-1, 1, (2, 1, 24, 24, 24)), dtype=torch.float32)
    other = VolumeFeatureExtractor(input_size=32, seed=5)
    state = {k: v.contiguous() for k, v in other.net.state_dict().items()}
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "resnet_10.pth")
    save_file(state, str(tmp_path / "resnet_10.safetensors"))
    expected = other.features(vols)
    for name in ("resnet_10.pth", "resnet_10.safetensors"):  # MedicalNet's layout and ours
        loaded = VolumeFeatureExtractor(weights=tmp_path / name, input_size=32)
        np.testing.assert_allclose(loaded.features(vols), expected, rtol=1e-5, atol=1e-6)
    torch.save({"state_dict": state, "extra": _RunsCodeWhenUnpickled()}, tmp_path / "evil.pth")
    with pytest.raises(InputError, match="evil.pth.*not a plain tensor checkpoint.*never unpickles"):
        VolumeFeatureExtractor(weights=tmp_path / "evil.pth")
    assert not (tmp_path / "pwned_by_pickle").exists()
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(InputError, match="wrong.pth.*do not fit"):
        VolumeFeatureExtractor(weights=tmp_path / "wrong.pth")
