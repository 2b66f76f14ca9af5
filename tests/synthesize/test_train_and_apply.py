"""Training (checkpoints, resume), model folders, sampling with the right affine, encoding."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from medgap.errors import InputError, ModelFolderError
from medgap.modelio import save_model
from medgap.synthesize import Synthesizer
from medgap.synthesize.data import load_training_set
from medgap.synthesize.model import HAGAN
from medgap.synthesize.train import HAGANStep, train


def _tiny(overrides=()):
    from medgap.synthesize.config import SynthesizeConfig

    return SynthesizeConfig.from_preset(
        "cpu-small", overrides=["model.size=32", "model.width=0.125", "model.latent_dim=16", "train.batch_size=2", "data.augment=false",
                                "train.log_every=1", *overrides])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, make_vol):
    write_vol = make_vol
    root = tmp_path_factory.mktemp("hagan")
    (root / "data").mkdir()
    write_vol(root / "data" / "a.nii.gz", shape=(30, 26, 20), spacing=(1.0, 1.0, 2.0), seed=0)
    write_vol(root / "data" / "b.nii.gz", shape=(28, 28, 28), spacing=(1.5, 1.5, 1.5), seed=1)
    cfg = _tiny(["train.steps=4", "train.checkpoint_every=2"])
    ts = load_training_set([root / "data"], cfg, progress=False)
    result = train(cfg, ts, root / "model", device="cpu", progress=False)
    assert result.steps == 4
    return root


def test_training_writes_checkpoints_and_resumes(model_dir):
    ckpts = sorted(p.name for p in (model_dir / "model.run" / "checkpoints").iterdir())
    assert ckpts == ["best", "step-00000002", "step-00000004"]
    cfg = _tiny(["train.steps=6", "train.checkpoint_every=2"])
    ts = load_training_set([model_dir / "data"], cfg, progress=False)
    result = train(cfg, ts, model_dir / "model2", run_dir=model_dir / "model.run", device="cpu", progress=False)
    assert result.resumed_from == 4 and result.steps == 6
    steps = [int(line.split(",")[0]) for line in (model_dir / "model.run" / "metrics.csv").read_text().split()[1:]]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_sample_affine_and_range(model_dir, tmp_path):
    syn = Synthesizer.load(model_dir / "model", device="cpu")
    paths = syn.save_samples(tmp_path / "s", n=2, seed=3)
    img = nib.load(str(paths[0]))
    assert img.shape == (32, 32, 32)
    assert np.allclose(np.diag(img.affine)[:3], syn.spacing_mm) and syn.spacing_mm > 0.5
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    data = img.get_fdata()
    assert data.min() >= -1 and data.max() <= 1
    again = syn.sample(2, seed=3)
    assert np.allclose(again[0], data, atol=1e-5)  # same seed, same volume
    assert np.abs(syn.sample(1, seed=4)[0] - data).max() > 1e-3


def test_encode_and_interpolate(model_dir, tmp_path):
    syn = Synthesizer.load(model_dir / "model", device="cpu")
    z_path, rec_path = syn.encode_to_files(model_dir / "data" / "a.nii.gz", tmp_path / "z.npy", tmp_path / "r.nii.gz")
    z = np.load(z_path)
    assert z.shape == (16,) and np.isfinite(z).all()
    assert nib.load(str(rec_path)).shape == (32, 32, 32)
    frames = syn.interpolate(model_dir / "data" / "a.nii.gz", model_dir / "data" / "b.nii.gz", steps=3)
    assert frames.shape == (3, 32, 32, 32)
    za, _ = syn.encode(model_dir / "data" / "a.nii.gz", reconstruct=False)
    assert np.allclose(frames[0], syn.generate(torch.from_numpy(za)[None])[0], atol=1e-5)
    with pytest.raises(InputError, match="npy"):
        syn.encode_to_files(model_dir / "data" / "a.nii.gz", tmp_path / "z.txt")


def test_wrong_folders_and_labels(model_dir, tmp_path):
    save_model(tmp_path / "other", method="harmonize", config={}, weights={"x": {"w": torch.zeros(1)}})
    with pytest.raises(ModelFolderError, match="harmonize"):
        Synthesizer.load(tmp_path / "other")
    syn = Synthesizer.load(model_dir / "model", device="cpu")
    with pytest.raises(InputError, match="unconditional"):
        syn.sample(1, label=2)


def test_losses_move_and_encoder_learns():
    # Many tiny steps on one fixed volume: the E^H reconstruction loss must drop.
    torch.manual_seed(0)
    cfg = _tiny(["train.lr_g=2e-3"])
    model = HAGAN(cfg.architecture())
    step = HAGANStep(model, cfg)
    x = -torch.ones(2, 1, 32, 32, 32)
    x[:, :, 8:24, 8:24, 8:24] = 0.5
    first = step(x, torch.randn(2, 16), 12)
    for _ in range(12):
        last = step(x, torch.randn(2, 16), 12)
    assert last["loss_eh"] < 0.7 * first["loss_eh"]
    assert all(np.isfinite(v) for v in last.values())


def test_conditional_training_and_label_check(tmp_path, make_vol):
    (tmp_path / "d").mkdir()
    for i in range(2):
        make_vol(tmp_path / "d" / f"{i}.nii.gz", seed=i)
    cfg = _tiny(["train.steps=1", "model.conditional=true"])
    ts = load_training_set([tmp_path / "d"], cfg, labels=[0, 1], label_names=["a", "b"], progress=False)
    train(cfg, ts, tmp_path / "m", device="cpu", progress=False)
    syn = Synthesizer.load(tmp_path / "m", device="cpu")
    assert syn.arch.num_classes == 2
    assert syn.sample(1, label=1).shape == (1, 32, 32, 32)
    with pytest.raises(InputError, match="outside the trained classes"):
        syn.sample(1, label=2)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "medgap", "synthesize", *args], capture_output=True, text=True)


def test_cli_sample_encode_and_errors(model_dir, tmp_path):
    done = _cli("sample", str(model_dir / "model"), "--n", "1", "--out", str(tmp_path / "s"), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s" / "sample_000.nii.gz").exists()
    done = _cli("encode", str(model_dir / "model"), str(model_dir / "data" / "a.nii.gz"), "--out", str(tmp_path / "z.npy"))
    assert done.returncode == 0, done.stderr and np.load(tmp_path / "z.npy").shape == (16,)
    done = _cli("sample", str(model_dir / "model"), "--n", "1", "--out", str(tmp_path / "bad"), "--label", "5")
    assert done.returncode == 2 and "label 5" in done.stderr and not (tmp_path / "bad").exists()
    done = _cli("train", str(model_dir / "data"), "--out", str(tmp_path / "m"), "--size", "48")
    assert done.returncode == 2 and "size" in done.stderr and "power of two" in done.stderr
    assert not (tmp_path / "m").exists()


def test_bf16_training_matches_fp32_and_keeps_float32_weights(native_bf16):
    # bfloat16 mixed precision changes the arithmetic of the products, not the method: from the same
    # weights and batch the first iteration's losses agree to ~2 digits; weights stay float32.
    x = -torch.ones(2, 1, 32, 32, 32)
    x[:, :, 8:24, 8:24, 8:24] = 0.5
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        cfg = _tiny([f"train.precision={precision}"])
        model = HAGAN(cfg.architecture())
        losses[precision] = HAGANStep(model, cfg)(x, torch.randn(2, 16), 12)
        assert all(p.dtype == torch.float32 for p in model.parameters())
    for key in ("loss_d", "loss_g", "loss_eh", "loss_eg"):
        assert losses["bf16"][key] == pytest.approx(losses["fp32"][key], rel=0.05)
    assert losses["bf16"] != losses["fp32"]


def test_bad_precision_is_refused():
    from medgap.errors import ConfigError

    with pytest.raises(ConfigError, match="precision"):
        _tiny(["train.precision=fp16"])


def test_paper_preset_keeps_the_published_recipe():
    from medgap.synthesize.config import SynthesizeConfig

    paper = SynthesizeConfig.from_preset("paper")
    assert (paper.train.lr_g, paper.train.lr_d, paper.train.recon_weight, paper.model.latent_prior, paper.train.precision) == (
        1e-4, 4e-4, 0.0, "normal", "fp32")
    small = SynthesizeConfig.from_preset("cpu-small")
    assert small.train.recon_weight > 0 and small.model.latent_prior == "encoded"


@pytest.mark.parametrize("recon_weight", [0.0, 1.0])
def test_generator_learns_from_reconstruction_only_when_asked(recon_weight):
    # The E^G step updates G only with recon_weight > 0 (the publication freezes G there).
    import contextlib

    torch.manual_seed(0)
    cfg = _tiny([f"train.recon_weight={recon_weight}", "train.precision=fp32"])
    model = HAGAN(cfg.architecture())
    step = HAGANStep(model, cfg)
    moved = {}

    @contextlib.contextmanager
    def phase(name):
        before = [p.detach().clone() for p in model.generator.parameters()]
        yield
        moved[name] = max((p - b).abs().max().item() for p, b in zip(model.generator.parameters(), before))

    step.phase = phase
    x = -torch.ones(2, 1, 32, 32, 32)
    x[:, :, 8:24, 8:24, 8:24] = 0.5
    step(x, torch.randn(2, 16), 12)
    assert moved["g"] > 0 and moved["d"] == 0 and moved["eh"] == 0
    assert (moved["eg"] > 0) == (recon_weight > 0)
    assert all(p.requires_grad for p in model.generator.parameters())


def test_encoded_latent_prior_is_saved_and_used(model_dir, tmp_path):
    from safetensors.torch import save_file

    folder = model_dir / "model"
    assert (folder / "latent_prior.safetensors").exists()  # cpu-small fits the prior to training codes
    syn = Synthesizer.load(folder, device="cpu")
    mean, std = syn.latent_prior["mean"], syn.latent_prior["std"]
    assert mean.shape == (16,) and (std >= 0).all()
    z = syn.sample_latents(4000, seed=0)
    assert torch.allclose(z.mean(0), mean, atol=0.15 * float(std.max()) + 1e-6)
    # A broken prior file is refused with the folder named, not half-used.
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    save_file({"mean": torch.zeros(3)}, str(broken / "latent_prior.safetensors"))
    with pytest.raises(ModelFolderError):
        Synthesizer.load(broken, device="cpu")
    # The publication's prior writes no file and samples N(0, I).
    from medgap.synthesize.data import load_training_set

    cfg = _tiny(["train.steps=1", "model.latent_prior=normal"])
    ts = load_training_set([model_dir / "data"], cfg, progress=False)
    train(cfg, ts, tmp_path / "normal", device="cpu", progress=False)
    assert not (tmp_path / "normal" / "latent_prior.safetensors").exists()
    assert Synthesizer.load(tmp_path / "normal", device="cpu").latent_prior is None


def test_one_volume_says_augmentation_stands_in_for_a_cohort(tmp_path, make_vol):
    (tmp_path / "d").mkdir()
    make_vol(tmp_path / "d" / "only.nii.gz", seed=0)
    cfg = _tiny(["train.steps=1", "data.augment=true"])
    ts = load_training_set([tmp_path / "d"], cfg, progress=False)
    with pytest.warns(UserWarning, match="ONE volume.*augmentation stands in for a cohort"):
        train(cfg, ts, tmp_path / "m", device="cpu", progress=False)


def test_evaluate_writes_3d_and_per_plane_scores(model_dir, tmp_path):
    from medgap.synthesize.evaluate import evaluate_model

    syn = Synthesizer.load(model_dir / "model", device="cpu")
    real = np.asarray(load_training_set([model_dir / "data"], syn.config, progress=False).volumes, np.float32)
    report = evaluate_model(syn, real, tmp_path / "report", n=2, seed=0)
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    for key in ("fid", "mmd2", "fid_axial", "fid_coronal", "fid_sagittal", "fid_2.5d", "slice_feature_extractor",
                "anatomy", "memorisation"):
        assert key in saved and saved[key] == report[key]
    assert (tmp_path / "report" / "montage.png").stat().st_size > 5000
