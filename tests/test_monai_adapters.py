"""medgap's apply steps inside MONAI pipelines give what the Python API gives."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import Dataset
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from medgap.adapters.monai import EncodeD, HarmonizeD, TransferD
from medgap.errors import InputError
from medgap.io import SpectraSet, read_nifti


def _brain(path, shape=(30, 36, 12), seed=0):
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    r = (x / 0.8) ** 2 + (y / 0.85) ** 2 + (z / 1.3) ** 2
    vol = (np.where(r < 1, 0.45, 0.0) + np.where(r < 0.45, 0.35, 0.0)) * 900 + 10 * rng.standard_normal(shape) * (r < 1)
    nib.save(nib.Nifti1Image(np.clip(vol, 0, None).astype(np.float32), np.diag([2.0, 2.0, 3.0, 1.0])), str(path))
    return path


def test_harmonize_and_encode_in_a_monai_pipeline(tmp_path):
    from medgap.harmonize import Harmonizer
    from medgap.harmonize.config import HarmonizeConfig
    from medgap.harmonize.train import load_training_set as flow_targets
    from medgap.harmonize.train import train as train_flow
    from medgap.synthesize import Synthesizer
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.synthesize.data import load_training_set
    from medgap.synthesize.train import train as train_hagan

    target, source = _brain(tmp_path / "target.nii.gz"), _brain(tmp_path / "source.nii.gz", seed=1)
    flow_cfg = HarmonizeConfig.from_preset("cpu-small", overrides=[
        "flow.image_size=[16,16]", "flow.levels=2", "flow.steps=1", "flow.hidden=4", "flow.blocks=1", "flow.bins=4",
        "train.batch_size=4", "train.steps=2", "data.template_bins=4", "harmonize.iterations=2"])
    train_flow(flow_cfg, flow_targets(flow_cfg, [target]), tmp_path / "flow", device="cpu", progress=False)
    gan_cfg = SynthesizeConfig.from_preset("cpu-small", overrides=["model.size=32", "model.width=0.125", "model.latent_dim=16",
                                                                   "train.batch_size=2", "data.augment=false", "train.steps=2"])
    train_hagan(gan_cfg, load_training_set([target], gan_cfg, progress=False), tmp_path / "hagan", device="cpu",
                progress=False)

    pipeline = Compose([LoadImaged("image"), EnsureChannelFirstd("image"),
                        HarmonizeD("image", tmp_path / "flow", method="blindharmony"),
                        EncodeD("image", tmp_path / "hagan")])
    item = Dataset([{"image": str(source)}], transform=pipeline)[0]

    volume = read_nifti(source)
    expected = Harmonizer.load(tmp_path / "flow", device="cpu").harmonize_volume(volume, method="blindharmony")
    assert tuple(item["image"].shape) == (1, *volume.shape)
    np.testing.assert_allclose(item["image"][0].numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(item["image"].affine.numpy(), volume.affine, atol=1e-5)  # metadata kept
    harmonized = volume.with_data(expected)
    harmonized.affine = volume.affine
    z, _ = Synthesizer.load(tmp_path / "hagan", device="cpu").encode(harmonized, reconstruct=False)
    np.testing.assert_allclose(item["image_z"].numpy(), z, atol=1e-4)
    with pytest.raises(InputError, match="channel-first"):
        HarmonizeD("image", tmp_path / "flow")({"image": np.zeros((4, 4, 4))})


def test_transfer_in_a_monai_pipeline(tmp_path):
    from medgap.transfer.apply import apply_transfer
    from medgap.transfer.config import TransferConfig
    from medgap.transfer.trainer import train

    rng = np.random.default_rng(0)
    wl = np.linspace(500, 700, 8)
    sim = SpectraSet(rng.random((64, 8)).astype(np.float32), wl, rng.integers(0, 2, 64), ["a", "b"])
    real = SpectraSet((rng.random((64, 8)) * 1.5).astype(np.float32), wl)
    cfg = TransferConfig.from_preset("cpu-small", overrides=["train.epochs=1", "hsi.hidden=8", "hsi.n_blocks=2",
                                                             "hsi.batch_size=32", "hsi.disc_hidden=8"])
    train(cfg, (sim, real), tmp_path / "m", progress=False)
    pipeline = Compose([TransferD("spectra", tmp_path / "m", wavelengths=wl, label_key="labels")])
    out = pipeline({"spectra": torch.from_numpy(sim.spectra), "labels": torch.from_numpy(sim.labels)})
    expected = apply_transfer(tmp_path / "m", SpectraSet(sim.spectra, wl, sim.labels), device="cpu").spectra
    np.testing.assert_allclose(out["spectra"].numpy(), expected, atol=1e-5)
