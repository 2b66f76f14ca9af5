"""The small-data pieces of cpu-small: DiffAugment, minibatch spread, EMA generator, R1, the augmentation
pool, the full-covariance latent prior, and the installed T1 cohort as the default training set."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from medgap.synthesize import Synthesizer
from medgap.synthesize.config import SynthesizeConfig
from medgap.synthesize.diffaugment import diff_augment
from medgap.synthesize.model import Architecture, LowResDiscriminator, HAGAN
from medgap.synthesize.train import HAGANStep

TINY = ["model.size=32", "model.width=0.125", "model.latent_dim=16", "train.batch_size=2", "data.augment=false", "train.log_every=1", "train.precision=fp32"]


def _tiny(*overrides):
    return SynthesizeConfig.from_preset("cpu-small", overrides=TINY + list(overrides))


def _brainish(b=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = -torch.ones(b, 1, size, size, size)
    x[:, :, 6:26, 8:24, 6:26] = torch.rand(b, 1, 20, 16, 20, generator=g)
    return x


def test_diff_augment_moves_slab_and_low_resolution_volume_together():
    x = _brainish(4, 64)
    slab, low = x[:, :, 16:24], F.avg_pool3d(x, 4)
    slab.requires_grad_(True)
    aug_slab, aug_low = diff_augment(slab, low, torch.Generator().manual_seed(3))
    assert aug_slab.shape == slab.shape and aug_low.shape == low.shape
    # the cutout square is the same in-plane square at both resolutions
    cut_high = (aug_slab == 0).all(dim=2)[:, 0]  # (B, S, S)
    cut_low = (aug_low == 0).all(dim=2)[:, 0]
    assert cut_high.any()
    assert torch.equal(cut_high[:, ::4, ::4], cut_low)
    # real and generated inputs of D get independent draws, and gradients reach G's output
    again, _ = diff_augment(slab, low, torch.Generator().manual_seed(4))
    assert not torch.equal(again, aug_slab)
    aug_slab.sum().backward()
    assert slab.grad is not None and slab.grad.abs().sum() > 0


def test_minibatch_std_tells_a_collapsed_batch_and_keeps_old_weights_loadable():
    # eval(): spectral norm then keeps its power-iteration vector, so calls are comparable
    plain, spread = (LowResDiscriminator(Architecture(32, 0.125, 16, 0, flag)).eval() for flag in (False, True))
    assert set(plain.state_dict()) == set(spread.state_dict())  # model folders from before load as they were
    torch.manual_seed(0)
    varied = torch.randn(4, 1, 8, 8, 8)
    same = varied[:1].expand(4, -1, -1, -1, -1).contiguous()
    # the same volume scores differently alone in a collapsed batch than in a varied one
    assert not torch.allclose(spread(same)[0], spread(torch.cat([same[:1], varied[1:]]))[0])
    assert torch.allclose(plain(same)[0], plain(torch.cat([same[:1], varied[1:]]))[0])
    # identical samples give a finite gradient (std 0 under a square root)
    x = same.clone().requires_grad_(True)
    spread(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_ema_generator_averages_and_is_what_the_folder_keeps(tmp_path):
    cfg = _tiny("train.ema_decay=0.5", "train.steps=1")
    torch.manual_seed(0)
    model = HAGAN(cfg.architecture())
    step = HAGANStep(model, cfg)
    before = [p.detach().clone() for p in model.generator.parameters()]
    step(_brainish(), torch.randn(2, 16), 12)
    for avg, p, b in zip(step.generator_ema.parameters(), model.generator.parameters(), before):
        assert torch.allclose(avg, 0.5 * b + 0.5 * p, atol=1e-6)
    assert "generator_ema" in step.modules() and step.sampling_generator() is step.generator_ema
    assert HAGANStep(HAGAN(cfg.architecture()), _tiny("train.ema_decay=0")).generator_ema is None


def test_r1_penalty_changes_the_discriminator_step_only_every_fourth_step():
    def d_after(r1_gamma, steps):
        cfg = _tiny(f"train.r1_gamma={r1_gamma}", "train.diff_augment=false")
        torch.manual_seed(0)
        model = HAGAN(cfg.architecture())
        step = HAGANStep(model, cfg)
        for i in range(steps):
            step(_brainish(seed=i), torch.randn(2, 16, generator=torch.Generator().manual_seed(i)), 12)
        return [p.detach().clone() for p in model.discriminator.parameters()]

    off, on = d_after(0.0, 1), d_after(100.0, 1)
    assert any(not torch.allclose(a, b) for a, b in zip(off, on))


def test_pool_holds_the_volumes_then_augmented_copies(monkeypatch):
    from medgap.synthesize import data as data_module
    from medgap.synthesize.data import Augment, TrainingSet, augmented_pool

    vols = np.stack([_brainish(1, 32, seed=s)[0, 0].numpy() for s in range(3)])
    ts = TrainingSet(vols, np.array([0, 1, 2]), ["a", "b", "c"], 2.0, ["x", "y", "z"])
    pool = augmented_pool(ts, 7, Augment(32, seed=0))
    assert pool.volumes.shape == (7, 32, 32, 32) and pool.volumes.dtype == np.float16
    assert np.allclose(pool.volumes[:3], vols, atol=2e-3)
    assert pool.labels.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert not np.allclose(pool.volumes[3], vols[0], atol=1e-2)
    assert pool.volumes.min() >= -1 and pool.volumes.max() <= 1
    monkeypatch.setattr(data_module, "POOL_LIMIT_BYTES", 1000)
    with pytest.warns(UserWarning, match="2 GiB"):
        assert augmented_pool(ts, 7, Augment(32, seed=0)) is None


def test_full_covariance_prior_samples_within_the_codes_span(tmp_path):
    from medgap.synthesize.data import TrainingSet
    from medgap.synthesize.train import encoded_prior

    cfg = _tiny()
    torch.manual_seed(0)
    model = HAGAN(cfg.architecture()).eval()
    ts = TrainingSet(np.stack([_brainish(1, 32, seed=s)[0, 0].numpy() for s in range(3)]), np.zeros(3, np.int64),
                     ["t1"], 2.0, [])
    full = encoded_prior(model, ts, None, n=6)
    assert full["basis"].shape == (6, 16)
    diagonal = encoded_prior(model, ts, None, n=6, covariance=False)
    assert "basis" not in diagonal
    syn = Synthesizer(model, cfg, 2.0, ["t1"], latent_prior=full)
    z = syn.sample_latents(500, seed=0) - full["mean"]
    # three distinct volumes: the codes span at most 2 directions around their mean, and so do the samples
    assert torch.linalg.matrix_rank(z, rtol=1e-4) <= 2
    cov = z.T @ z / len(z)
    assert torch.allclose(cov, full["basis"].T @ full["basis"], atol=0.2 * float(cov.abs().max()))


def test_paper_preset_turns_every_small_data_piece_off():
    paper = SynthesizeConfig.from_preset("paper")
    assert (paper.train.diff_augment, paper.model.minibatch_std, paper.train.ema_decay, paper.train.r1_gamma, paper.data.augment_pool) == (
        False, False, 0.0, 0.0, 0)
    assert paper.architecture().minibatch_std is False
    small = SynthesizeConfig.from_preset("cpu-small")
    assert small.train.diff_augment and small.model.minibatch_std and small.train.ema_decay > 0 and small.train.r1_gamma > 0


def test_t1_cohort_is_five_brains_on_one_grid_with_one_held_out():
    from medgap.synthesize.data import COHORT_FOV_MM, cohort_dataset

    cfg = SynthesizeConfig.from_preset("cpu-small", overrides=["model.size=32"])
    train_set, held = cohort_dataset(cfg), cohort_dataset(cfg, split="heldout")
    assert train_set.volumes.shape == (5, 32, 32, 32) and held.volumes.shape == (1, 32, 32, 32)
    assert train_set.spacing_mm == pytest.approx(COHORT_FOV_MM / 32, rel=0.02)
    names = [s.split(":")[1] for s in train_set.sources]
    assert held.sources == ["t1-cohort:s1"] and "s1" not in names and len(set(names)) == 5
    for v in np.concatenate([train_set.volumes, held.volumes]):
        assert v.min() == pytest.approx(-1.0) and v.max() <= 1.0
        inside = v > -0.9
        assert 0.15 < inside.mean() < 0.6  # a brain in the middle of the cube, not cut off at the border
        assert not inside[0].any() and not inside[-1].any()
    # different brains, not copies of one
    flat = train_set.volumes.reshape(5, -1).astype(np.float32)
    assert min(np.abs(flat[i] - flat[j]).mean() for i in range(5) for j in range(i + 1, 5)) > 0.01


def test_cli_train_without_volumes_trains_on_the_installed_cohort(tmp_path):
    from medgap.cli import app

    args = ["synthesize", "train", "--out", str(tmp_path / "m"), "--size", "32", "--steps", "1",
            "--set", "model.width=0.125", "--set", "model.latent_dim=16", "--set", "train.batch_size=2", "--set", "data.augment_pool=6",
            "--precision", "fp32"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "installed real T1 cohort" in done.output
    import json

    trained_on = json.loads((tmp_path / "m" / "config.json").read_text())["trained_on"]
    assert trained_on["volumes"] == 5 and all(s.startswith("t1-cohort:") for s in trained_on["sources"])
    ct = subprocess.run([sys.executable, "-m", "medgap", "synthesize", "train", "--out", str(tmp_path / "c"),
                         "--modality", "ct"], capture_output=True, text=True, timeout=120)
    assert ct.returncode == 2 and "is MR" in ct.stderr and not (tmp_path / "c").exists()


def test_a_damaged_prior_basis_and_a_ct_cohort_are_refused(tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from medgap.errors import InputError, ModelFolderError
    from medgap.synthesize.data import cohort_dataset, load_training_set
    from medgap.synthesize.train import train

    cfg = _tiny("train.steps=1", "data.augment_pool=0")
    data = cohort_dataset(cfg)
    train(cfg, data, tmp_path / "m", device="cpu", progress=False)
    assert "basis" in Synthesizer.load(tmp_path / "m", device="cpu").latent_prior
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "m", broken)
    prior = load_file(str(broken / "latent_prior.safetensors"))
    save_file({**prior, "basis": prior["basis"][:, :3].contiguous()}, str(broken / "latent_prior.safetensors"))
    with pytest.raises(ModelFolderError, match="latent_prior"):  # the manifest catches it, naming the file
        Synthesizer.load(broken, device="cpu")
    with pytest.raises(InputError, match="T1 cohort is MR"):
        load_training_set(["t1-cohort"], _tiny("data.modality=ct"))
