import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from medgap.errors import InputError, ModelFolderError
from medgap.io import ImageSet, SpectraSet
from medgap.metrics import mmd2_unbiased
from medgap.modelio import save_model
from medgap.transfer import TransferConfig, apply_transfer, load_transfer, train
from medgap.transfer.cinn import REAL, SIM
from medgap.transfer.data import fit_stats
from medgap.transfer.evaluation import normalise
from medgap.transfer.model import build_model
from medgap.training.contract import run_folder
from medgap.transfer.trainer import BatchSampler, make_optimizers

from process_helpers import run_ok
from transfer_helpers import tiny_overrides, unlabelled

ROOT = Path(__file__).resolve().parents[2]


def _mmd(a, b):
    return mmd2_unbiased(normalise(a.spectra[:600]), normalise(b.spectra[:600]))


def test_cpu_small_training_closes_the_gap(hsi_pair, tmp_path):
    sim, real = hsi_pair
    cfg = TransferConfig.from_preset("cpu-small", overrides=["train.epochs=3", "hsi.batch_size=500"])
    train(cfg, (sim, unlabelled(real)), tmp_path / "m", progress=False)
    out = apply_transfer(tmp_path / "m", sim)
    assert _mmd(out, real) < 0.5 * _mmd(sim, real)
    np.testing.assert_array_equal(out.labels, sim.labels)  # labels carried over
    again = apply_transfer(tmp_path / "m", sim)
    np.testing.assert_array_equal(out.spectra, again.spectra)  # deterministic apply
    # cycle consistency is exact in the network's (normalised) space
    loaded = load_transfer(tmp_path / "m", "cpu")
    x = loaded.stats[SIM].normalize(torch.from_numpy(sim.spectra[:500]))
    y = torch.from_numpy(sim.labels[:500])
    back = loaded.model.transfer(loaded.model.transfer(x, SIM, y), REAL, y)
    assert ((back - x).norm(dim=1) / x.norm(dim=1)).max() < 1e-4
    # in raw units only up to the re-normalisation of the transferred spectra to unit L2 norm
    # (the norm is lost, and the whitened input amplifies that along weak channel combinations: the
    # typical spectrum comes back to ~1 % of its peak, the worst to ~12 %, as with CORAL itself)
    back = apply_transfer(loaded, SpectraSet(out.spectra, out.wavelengths, out.labels), "real2sim")
    err, peak = np.abs(normalise(back.spectra) - normalise(sim.spectra)).max(1), np.abs(normalise(sim.spectra)).max()
    assert np.median(err) < 0.03 * peak and err.max() < 0.2 * peak
    info = json.loads((tmp_path / "m" / "config.json").read_text())
    assert info["method"] == "transfer" and len(info["extras"]["history"]) == 3
    assert (run_folder(tmp_path / "m") / "metrics.csv").exists()


def test_resume_continues_exactly(hsi_pair, tmp_path):
    sim, real = hsi_pair
    full = TransferConfig.from_preset("cpu-small", overrides=tiny_overrides(3))
    train(full, (sim, real), tmp_path / "a", progress=False)
    train(full.replace(train={"epochs": 2}), (sim, real), tmp_path / "b", progress=False)  # "interrupted"
    with pytest.raises(InputError, match="--overwrite"):  # the finished model folder is kept
        train(full, (sim, real), tmp_path / "b", progress=False)
    train(full, (sim, real), tmp_path / "b", progress=False, overwrite=True)  # resumes at epoch 3
    a, b = (load_file(str(tmp_path / k / "generator.safetensors")) for k in "ab")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    hist = json.loads((tmp_path / "b" / "config.json").read_text())["extras"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    other = full.replace(hsi={"hidden": 16})
    with pytest.raises(InputError, match=r"another run \(changed: hsi.hidden \(32 -> 16\)"):
        train(other, (sim, real), tmp_path / "b", progress=False, overwrite=True)


def test_optimisers_are_separate_and_sampling_is_class_balanced():
    cfg = TransferConfig.from_preset("cpu-small")
    model = build_model(cfg, 40, 10)
    opt_g, opt_d = make_optimizers(model, cfg)
    g_ids = {id(p) for p in opt_g.param_groups[0]["params"]}
    d_ids = {id(p) for p in opt_d.param_groups[0]["params"]}
    assert not g_ids & d_ids
    assert g_ids == {id(p) for p in model.generator.parameters() if p.requires_grad}
    assert d_ids == {id(p) for p in model.dis.parameters()}
    # PAT: the image cINN has its own learning rate (cinn_lr); CycleGAN/UNIT and the paper preset use lr
    for preset, method, expected in (("cpu-small", "cinn", 1e-4), ("cpu-small", "cyclegan", 1e-3),
                                     ("paper", "cinn", 1e-3)):
        pat = TransferConfig.from_preset(preset, overrides=["modality=pat", f"method={method}",
                                                            "pat.width=8", "pat.blocks_per_scale=[1]"])
        opt = make_optimizers(build_model(pat, 4, 0, image_shape=(16, 16)), pat)[0]
        assert opt.param_groups[0]["lr"] == expected, (preset, method)
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    idx = BatchSampler(1000, labels, seed=0, balanced=True)(3000, step=5)
    counts = np.bincount(labels[idx.numpy()], minlength=3)
    assert counts.min() > 850  # ~1000 each despite a 90:9:1 imbalance
    assert torch.equal(idx, BatchSampler(1000, labels, seed=0, balanced=True)(3000, step=5))


@pytest.mark.parametrize("method", ["unit", "cyclegan"])
def test_spectral_baselines_train_and_apply(hsi_pair, tmp_path, method):
    sim, real = hsi_pair
    cfg = TransferConfig.from_preset("cpu-small", overrides=tiny_overrides(1) + [f"method={method}"])
    train(cfg, (sim, real), tmp_path / method, progress=False)
    out = apply_transfer(tmp_path / method, sim)
    assert out.spectra.shape == sim.spectra.shape and np.all(np.isfinite(out.spectra))
    assert not np.allclose(normalise(out.spectra), normalise(sim.spectra))


@pytest.mark.parametrize("method", ["cinn", "unit", "cyclegan"])
def test_image_methods_train_and_apply(pat_pair, tmp_path, method):
    sim, real = pat_pair
    cfg = TransferConfig.from_preset("cpu-small", overrides=tiny_overrides(1, "pat") + [f"method={method}"])
    train(cfg, (sim, unlabelled(real)), tmp_path / method, progress=False)
    out = apply_transfer(tmp_path / method, sim)
    assert isinstance(out, ImageSet) and out.images.shape == sim.images.shape
    np.testing.assert_array_equal(out.segmentation, sim.segmentation)
    if method == "cinn":
        back = apply_transfer(tmp_path / method, out, "real2sim")
        np.testing.assert_allclose(back.images, sim.images, atol=1e-3 * np.abs(sim.images).max())


def test_bad_inputs_are_refused_without_partial_outputs(hsi_pair, pat_pair, tmp_path):
    sim, real = hsi_pair
    cfg = TransferConfig.from_preset("cpu-small", overrides=tiny_overrides(1))
    out = tmp_path / "m"
    zero = real.spectra.copy()
    zero[7] = 0
    with pytest.raises(InputError, match="all zero.*row 7"):
        train(cfg, (sim, SpectraSet(zero, real.wavelengths, path=Path("real.npz"))), out, progress=False)
    with pytest.raises(InputError, match="wavelength grid"):
        train(cfg, (sim, SpectraSet(real.spectra, real.wavelengths + 1.0)), out, progress=False)
    with pytest.raises(InputError, match="needs labels"):
        train(cfg.replace(condition="domain+label"), (unlabelled(sim), real), out, progress=False)
    with pytest.raises(InputError, match="NaN"):
        bad = real.spectra.copy()
        bad[0, 3] = np.nan
        SpectraSet(bad, real.wavelengths)
    psim, preal = pat_pair
    small = ImageSet(preal.images[:, :, :16, :32], preal.wavelengths)
    with pytest.raises(InputError, match="image size"):
        train(cfg, (psim, small), out, progress=False)
    assert not out.exists() and not run_folder(out).exists()
    save_model(tmp_path / "other", method="harmonize", config={}, weights={"w": {"a": torch.zeros(1)}})
    with pytest.raises(ModelFolderError, match="harmonize"):
        apply_transfer(tmp_path / "other", sim)


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_process_torchrun_equals_one_process(tmp_path):
    script = str(ROOT / "tests" / "transfer" / "ddp_transfer.py")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    run_ok([sys.executable, script, str(tmp_path / "one")], tmp_path)
    run_ok([torchrun, "--standalone", "--nproc_per_node", "2", script, str(tmp_path / "two")], tmp_path)
    a, b = (load_file(str(tmp_path / k / "generator.safetensors")) for k in ("one", "two"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_chunked_batches_give_the_same_model(hsi_pair, tmp_path):
    sim, real = hsi_pair
    exact = ["condition=domain", "train.domain_noise=0", "hsi.noise_std=0", "hsi.disc_dropout=0"]
    cfg = TransferConfig.from_preset("cpu-small", overrides=tiny_overrides(1) + exact)
    train(cfg, (sim, real), tmp_path / "whole", progress=False)
    train(cfg.replace(hsi={"chunk": 100}), (sim, real), tmp_path / "chunked", progress=False)  # 256 = 100+100+56
    a, b = (load_file(str(tmp_path / k / "generator.safetensors")) for k in ("whole", "chunked"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_bf16_training_learns_and_resumes_across_precisions(hsi_pair, tmp_path, native_bf16):
    sim, real = hsi_pair
    cfg = TransferConfig.from_preset("cpu-small", overrides=["train.epochs=3", "hsi.batch_size=500",
                                                             "train.precision=bf16"])
    train(cfg.replace(train={"epochs": 2}), (sim, unlabelled(real)), tmp_path / "m", progress=False)
    train(cfg.replace(train={"precision": "fp32"}), (sim, unlabelled(real)), tmp_path / "m", progress=False,
          overwrite=True)
    hist = json.loads((tmp_path / "m" / "config.json").read_text())["extras"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]  # resumed at another precision
    out = apply_transfer(tmp_path / "m", sim)
    assert out.spectra.dtype == np.float32 and np.isfinite(out.spectra).all()
    assert _mmd(out, real) < 0.5 * _mmd(sim, real)


@pytest.mark.parametrize("method", ["standardise", "coral"])
def test_closed_form_baselines_are_model_folders(hsi_pair, tmp_path, method):
    sim, real = hsi_pair
    cfg = TransferConfig.from_preset("cpu-small", overrides=[f"method={method}"])
    train(cfg, (sim, unlabelled(real)), tmp_path / "m", progress=False)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "README.md", "config.json", "manifest.json", "stats.safetensors"]
    assert not run_folder(tmp_path / "m").exists()  # nothing trained, nothing checkpointed
    out = apply_transfer(tmp_path / "m", sim).spectra
    # spectra as measured (hsi.brightness=keep): the real domain's per-channel mean and spread ...
    np.testing.assert_allclose(out.mean(0), real.spectra.mean(0), rtol=1e-3)
    np.testing.assert_allclose(out.std(0), real.spectra.std(0), rtol=0.02 if method == "standardise" else 0.1)
    # ... and CORAL also its channel covariance, which standardisation leaves at the simulation's
    corr_gap = lambda x: np.abs(np.corrcoef(x.T) - np.corrcoef(real.spectra.T)).mean()  # noqa: E731
    if method == "coral":
        assert corr_gap(out) < 0.2 * corr_gap(sim.spectra)
    else:
        assert corr_gap(out) == pytest.approx(corr_gap(sim.spectra), rel=1e-3)
    back = apply_transfer(tmp_path / "m", SpectraSet(out, sim.wavelengths, sim.labels), "real2sim")
    err = np.abs(back.spectra - sim.spectra).max(1) / np.abs(sim.spectra).max()  # nothing is lost
    assert np.median(err) < 1e-4 and err.max() < 1e-3
    # the publication's protocol divides by the L2 norm and writes the target's mean norm
    cfg = TransferConfig.from_preset("cpu-small", overrides=[f"method={method}", "hsi.brightness=l2"])
    train(cfg, (sim, unlabelled(real)), tmp_path / "l2", progress=False)
    norms = np.linalg.norm(apply_transfer(tmp_path / "l2", sim).spectra, axis=1)
    np.testing.assert_allclose(norms, np.linalg.norm(real.spectra, axis=1).mean(), rtol=1e-4)


def test_whitened_input_makes_the_untrained_cinn_coral(hsi_pair, tmp_path):
    sim, real = hsi_pair
    train(TransferConfig.from_preset("cpu-small", overrides=["method=coral"]), (sim, unlabelled(real)), tmp_path / "coral",
          progress=False)
    coral = apply_transfer(tmp_path / "coral", sim)
    cfg = TransferConfig.from_preset("cpu-small", overrides=["condition=domain"])
    stats = (fit_stats(sim, True, cfg.train.whiten_ridge, l2=False), fit_stats(real, True, cfg.train.whiten_ridge, l2=False))
    model = build_model(cfg, sim.spectra.shape[1], 0)
    with torch.no_grad():
        x = stats[0].normalize(torch.from_numpy(sim.spectra))
        moved = stats[1].denormalize(model.transfer(x, SIM)).numpy()
    np.testing.assert_allclose(moved, coral.spectra, rtol=1e-3, atol=1e-5)
    assert TransferConfig.from_preset("paper").train.whiten is False


def test_heldout_real_likelihood_is_logged_and_kept_out(hsi_pair, tmp_path):
    sim, real = hsi_pair
    cfg = TransferConfig.from_preset("cpu-small", overrides=[*tiny_overrides(2), "train.align=global"])
    train(cfg, (sim, unlabelled(real)), tmp_path / "m", progress=False)
    info = json.loads((tmp_path / "m" / "config.json").read_text())
    bpd = [h["heldout_real_bits_per_dim"] for h in info["extras"]["history"]]
    assert len(bpd) == 2 and all(np.isfinite(bpd))
    assert info["trained_on"]["real_samples"] == len(real) - int(0.1 * len(real))  # 10 % held out
    assert "heldout_real_bits_per_dim" in (run_folder(tmp_path / "m") / "metrics.csv").read_text()


@pytest.mark.parametrize("extra", [["condition=domain+label", "train.real_labels=mixture"],
                                   ["train.transport_weight=1"]])
def test_cinn_options_train(hsi_pair, tmp_path, extra):
    sim, real = hsi_pair
    cfg = TransferConfig.from_preset("cpu-small", overrides=tiny_overrides(1) + extra)
    model = build_model(cfg, sim.spectra.shape[1], 10 if "mixture" in extra[-1] else 0)
    xa = torch.randn(8, sim.spectra.shape[1])
    ya = torch.randint(0, 10, (8,)) if model.n_classes else None
    loss, logs, x_ab, x_ba = model.generator_loss(xa, ya, torch.randn(6, sim.spectra.shape[1]))
    assert torch.isfinite(loss) and x_ab.shape == (8, sim.spectra.shape[1]) and x_ba.shape == (6, sim.spectra.shape[1])
    loss.backward()
    train(cfg, (sim, unlabelled(real)), tmp_path / "m", progress=False)
    out = apply_transfer(tmp_path / "m", sim)
    assert np.isfinite(out.spectra).all()
