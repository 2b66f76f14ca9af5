"""The default harmonisation (restoration net + source intensity curve) and the real T1 cohort."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from medgap.errors import InputError
from medgap.harmonize.api import Harmonizer
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.augment import random_nonbrain_tissue, random_scanner_change
from medgap.harmonize.simulate import simulate
from medgap.harmonize.train import load_training_set, train

from harmonize_helpers import TINY



def _slices(n=8, size=(32, 40), seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size[0]), torch.linspace(-1, 1, size[1]), indexing="ij")
    r = (yy / 0.8) ** 2 + (xx / 0.9) ** 2
    base = torch.where(r < 1, 0.45, 0.0) + torch.where(r < 0.4, 0.4, 0.0)
    x = base.expand(n, 1, *size) + 0.03 * torch.randn(n, 1, *size, generator=g) * (r < 1)
    return x.clamp(0, 1)


def test_random_scanner_change_keeps_background_and_range_and_is_seeded():
    x = _slices()
    y1 = random_scanner_change(x, torch.Generator().manual_seed(3))
    y2 = random_scanner_change(x, torch.Generator().manual_seed(3))
    y3 = random_scanner_change(x, torch.Generator().manual_seed(4))
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    assert y1.shape == x.shape and float(y1.min()) >= 0 and float(y1.max()) <= 1
    # background away from the head stays zero (lower resolution may blur the edge by a few pixels)
    near = torch.nn.functional.max_pool2d((x > 0.05).float(), 11, stride=1, padding=5) > 0
    assert float(y1[~near].abs().max()) == 0.0
    assert float((y1 - x).abs().mean()) > 0.01


def test_nonbrain_tissue_is_a_band_outside_the_brain_on_a_fraction_of_slices():
    x = _slices(64)
    fg = x > 0.05
    y, band = random_nonbrain_tissue(x, torch.Generator().manual_seed(1), p=0.5)
    y2, _ = random_nonbrain_tissue(x, torch.Generator().manual_seed(1), p=0.5)
    assert torch.equal(y, y2) and y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert not bool((band & fg).any())  # the brain itself is untouched
    assert torch.equal(y[~band], x[~band])
    near = torch.nn.functional.max_pool2d(fg.float(), 13, stride=1, padding=6) > 0
    assert not bool((band & ~near).any())  # at most 6 pixels from the brain
    touched = band.flatten(1).any(1).float().mean()
    assert 0.25 < float(touched) < 0.75  # about half of the slices
    assert float(y[band].mean()) > 0.1  # tissue, not background
    none, nothing = random_nonbrain_tissue(x, torch.Generator().manual_seed(1), p=0.0)
    assert torch.equal(none, x) and not bool(nothing.any())


def test_training_with_non_brain_tissue_and_the_doubt_check_warns_before_any_work(tmp_path, monkeypatch):
    import medgap.harmonize.train as harmonize_train

    def stop(*args, **kwargs):
        raise RuntimeError("reached the training")

    monkeypatch.setattr(harmonize_train, "setup_distributed", stop)
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=["restore.nonbrain_p=0.3"])
    with pytest.warns(UserWarning, match="restore.doubt=null"), pytest.raises(RuntimeError, match="reached"):
        train(cfg, None, tmp_path / "m")
    quiet = cfg.replace(restore={"doubt": None})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning with the doubt check off
        with pytest.raises(RuntimeError, match="reached"):
            train(quiet, None, tmp_path / "m")


@pytest.fixture(scope="module")
def restore_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("restore") / "model"
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=["train.steps=20", "restore.steps=600",
                                                              "train.checkpoint_every=1000"])
    summary = train(cfg, None, out, device="cpu", progress=False).metrics
    return out, summary


def test_default_model_is_trained_on_the_cohort_and_uses_restore(restore_model):
    out, summary = restore_model
    assert (out / "restore.safetensors").is_file()
    h = Harmonizer.load(out, device="cpu")
    assert h.default_method == "restore"
    targets = h.info["trained_on"]["targets"]
    assert len(targets) == 4 and not any("colin" in t for t in targets)
    assert summary["restore"]["steps"] == 600
    described = h.describe()  # what `harmonize evaluate` and the demo record
    assert described["options"] == described["config"]["harmonize"] and described["options"]["iterations"] == 10


def test_restore_beats_histogram_matching_on_the_held_out_subject(restore_model):
    # held-out real subject (Colin 27): changes histogram matching undoes well (gamma) and ones it
    # cannot (bias field, low resolution + noise); the default must be closer to the truth on average
    from medgap.harmonize.evaluate import compare_methods, heldout_subject_slices

    out, _ = restore_model
    h = Harmonizer.load(out, device="cpu")
    truth, brain, position = heldout_subject_slices(h.cfg.flow.image_size, every=6, seed=2)
    res = compare_methods(h, truth, brain, position, ["gamma1.5", "bias", "lowres_noise"],
                          {"histogram": ("histogram", None), "restore": ("restore", None),
                           "identity": ("identity", None)})
    mean = {m: np.mean([res[d][m]["psnr_brain"] for d in ("gamma1.5", "bias", "lowres_noise")])
            for m in ("histogram", "restore", "identity")}
    assert mean["restore"] > mean["histogram"] + 0.3 and mean["restore"] > mean["identity"] + 3
    # background voxels never change
    xs = simulate(truth, "bias", seed=1)
    xh = h.harmonize_slices(xs, position)
    assert torch.equal(xh[xs <= 0.05], xs[xs <= 0.05])


def test_model_without_restoration_net_defaults_to_blindharmony(tmp_path, target_file):
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=TINY + ["restore.steps=0"])
    train(cfg, load_training_set(cfg, [target_file]), tmp_path / "m", device="cpu", progress=False)
    h = Harmonizer.load(tmp_path / "m", device="cpu")
    assert h.default_method == "blindharmony" and not (tmp_path / "m" / "restore.safetensors").exists()
    xs = torch.rand(2, 1, 16, 16)
    with pytest.raises(InputError, match="no restoration net"):
        h.harmonize_slices(xs, torch.tensor([0.3, 0.6]), "restore")
    assert h.harmonize_slices(xs, torch.tensor([0.3, 0.6])).shape == xs.shape


def test_restore_steps_default_is_ten_flow_steps_and_paper_trains_none():
    assert HarmonizeConfig.from_preset("cpu-small").restore_steps == 3000
    assert HarmonizeConfig.from_preset("cpu-small", overrides=["train.steps=7"]).restore_steps == 70
    assert HarmonizeConfig.from_preset("paper").restore_steps == 0


def test_combined_domain_is_the_sequence():
    x = _slices(3)
    assert torch.allclose(simulate(x, "bias+gamma1.3", seed=5),
                          simulate(simulate(x, "bias", seed=5), "gamma1.3", seed=1005))


def test_cohort_brains_share_one_look_and_colin_and_s1_are_held_out():
    from medgap.data.cohort import HELDOUT, TEST_VOLUMES, TRAINING, load_brain

    assert "colin27" in HELDOUT and "s1" in TEST_VOLUMES and not {"colin27", "s1"} & set(TRAINING)
    ref = load_brain("icbm2009a")
    q_ref = np.percentile(ref.t1.data[ref.mask], [10, 50, 90])
    # S1 is skull-stripped at set-up by registering a head template: its mask is a brain's size
    # (1 mm voxels: 1.0-2.0 litres), not the head's
    assert 1.0e6 < load_brain("s1").mask.sum() < 2.0e6
    for name in TRAINING[1:] + HELDOUT + TEST_VOLUMES:
        b = load_brain(name)
        assert b.t1.shape == b.mask.shape and b.mask.mean() > 0.05
        # S1 is 8-bit: ties between its 256 values move single quantiles by up to one grey level
        np.testing.assert_allclose(np.percentile(b.t1.data[b.mask], [10, 50, 90]), q_ref,
                                   atol=0.04 if name == "s1" else 0.01)
        assert float(b.t1.data[~b.mask].max()) == 0.0


def test_missing_cohort_names_the_setup_command(tmp_path, monkeypatch):
    from medgap.data.install import installed_path

    monkeypatch.setenv("MEDGAP_DATA", str(tmp_path))
    with pytest.raises(InputError, match="make setup"):
        installed_path("colin27_brain.nii.gz")


def test_a_t2_like_target_among_t1s_is_named(tmp_path):
    import warnings

    from medgap.data.cohort import load_brain
    from medgap.data.sample import resample_isotropic
    from medgap.io import Volume, write_nifti

    targets, masks = [], []
    for name in ["icbm2009a", "icbm2009c", "mni152_fsl", "sri24", "t2like"]:
        b = load_brain("icbm2009c" if name == "t2like" else name)
        data = np.where(b.mask, 1.05 - b.t1.data, 0.0) if name == "t2like" else b.t1.data  # CSF bright, WM dark
        vol = resample_isotropic(Volume(data.astype(np.float32), b.t1.affine), 2.0)
        mask = resample_isotropic(Volume(b.mask.astype(np.float32), b.t1.affine), 2.0, order=0)
        targets.append(str(write_nifti(tmp_path / f"{name}.nii.gz", vol.data, like=vol)))
        masks.append(str(write_nifti(tmp_path / f"{name}_mask.nii.gz", mask.data, like=mask)))
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=["train.steps=60", "restore.steps=0"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train(cfg, load_training_set(cfg, targets, masks), tmp_path / "m", device="cpu",
                        progress=False).metrics
    assert [u["target"] for u in summary["unlike_the_others"]] == [targets[-1]]
    assert any("t2like.nii.gz" in str(w.message) and "less likely" in str(w.message) for w in caught)


def test_bf16_conditioners_keep_the_flow_invertible(native_bf16):
    from medgap.harmonize.model import SliceFlow
    from medgap.training.precision import set_precision

    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=TINY)
    model = SliceFlow.from_config(cfg.flow, cfg.data.template_bins)
    x = torch.rand(4, 1, 16, 16)
    model.flow.initialize(model.dequantize(x))
    model.eval()
    with torch.inference_mode():
        z32 = model.encode(x)
        set_precision(model, "bf16", "cpu")
        z16 = model.encode(x)
        back = model.decode(z16)
    assert z16.dtype == torch.float32
    assert float((back - x).abs().max()) < 1e-4  # the invertible path is float32 either way
    assert not torch.equal(z16, z32)  # the conditioners really ran in bfloat16


class _ConstantCorrection(torch.nn.Module):
    """A stand-in net whose correction is +c everywhere (so its size is known exactly)."""

    def __init__(self, c: float):
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(c))

    def forward(self, x):
        return torch.full_like(x, float(self.c))


@pytest.mark.parametrize("c, expected_w", [(0.01, 0.0), (0.03, 0.5), (0.1, 1.0)])
def test_gate_opens_with_the_size_of_the_correction(c, expected_w):
    from medgap.harmonize.restore import gated_restore

    x = _slices(2) * 0.8  # room below 1 so the +c correction is not clipped
    out, w, doubt = gated_restore(_ConstantCorrection(c), x, r0=0.01, gate_low=2.0, gate_high=4.0)
    assert w == pytest.approx(expected_w, abs=1e-4) and doubt is None
    fg = x > 0.05
    assert torch.allclose(out[fg], x[fg] + w * c, atol=1e-5) and torch.equal(out[~fg], x[~fg])


class _LeftSidedCorrection(torch.nn.Module):
    """A stand-in net that corrects the left half only: its answers for a slice and its mirror image
    (the right half, mirrored back) disagree by c everywhere."""

    def __init__(self, c: float):
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(c))

    def forward(self, x):
        out = torch.zeros_like(x)
        out[..., : x.shape[-1] // 2] = float(self.c)
        return out


@pytest.mark.parametrize("c, expected_w", [(0.1, 1.0), (0.115, 0.5), (0.13, 0.0)])
def test_gate_backs_off_where_the_net_disagrees_with_itself_on_the_mirror_image(c, expected_w):
    from medgap.harmonize.restore import gated_restore

    x = torch.full((2, 1, 16, 16), 0.5)  # disagreement = c / r0 exactly
    _, w, doubt = gated_restore(_LeftSidedCorrection(c), x, r0=0.01, gate_low=0.0, gate_high=1.0,
                                doubt=(10.5, 12.5))
    assert doubt == pytest.approx(c / 0.01, rel=1e-4)
    assert w == pytest.approx(expected_w, abs=1e-4)
    _, w_symmetric, doubt_symmetric = gated_restore(_ConstantCorrection(c), x, r0=0.01, gate_low=0.0, gate_high=1.0,
                                                    doubt=(10.5, 12.5))
    assert doubt_symmetric == pytest.approx(0.0) and w_symmetric == 1.0


def test_match_own_histogram_keeps_ranks_and_takes_the_clean_values():
    from medgap.harmonize.augment import match_own_histogram

    clean = _slices(2)
    changed = random_scanner_change(clean, torch.Generator().manual_seed(0), contrast_p=0, bias_p=0,
                                    resolution_p=0, noise_p=0)  # a random gamma only: monotone
    matched = match_own_histogram(changed, clean)
    fg = clean > 0.05
    assert float((matched - clean)[fg].abs().max()) < 0.02  # a monotone change is undone
    # added non-brain tissue, left out of the ranking, leaves the brain's standardisation as it was
    with_band, band = random_nonbrain_tissue(changed, torch.Generator().manual_seed(2), p=1.0)
    assert bool(band.any())
    matched_band = match_own_histogram(with_band, clean, exclude=band)
    assert torch.equal(matched_band[fg], matched[fg])
    assert float(matched_band[band].min()) > 0.05 and float(matched_band.max()) <= 1


def test_slice_flicker_is_zero_for_a_constant_error_and_positive_otherwise(restore_model):
    from medgap.harmonize.evaluate import slice_flicker

    out, _ = restore_model
    h = Harmonizer.load(out, device="cpu")
    truth = _slices(1, size=(64, 80)).repeat(6, 1, 1, 1)
    brain = truth > 0.05
    pos = torch.linspace(0.3, 0.7, 6)
    flicker = slice_flicker(h, truth, brain, pos, "gamma1.3", {"identity": ("identity", None),
                                                              "restore": ("restore", None)})
    assert flicker["identity"] < 1e-3  # the same slice six times: the same error on every slice
    assert np.isfinite(flicker["restore"]) and flicker["restore"] >= 0


def test_context_rows_stay_inside_each_volume():
    from medgap.harmonize.restore import context_index

    rows = context_index([3, 2], 1).tolist()
    assert rows == [[0, 0, 1], [0, 1, 2], [1, 2, 2], [3, 3, 4], [3, 4, 4]]
    assert context_index([4], 0).tolist() == [[0], [1], [2], [3]]


class _SumOfNeighbours(torch.nn.Module):
    """A stand-in net whose output depends on every input channel."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.1))

    def forward(self, x):
        return self.w * (x.sum(dim=1, keepdim=True) - x.shape[1] * x[:, x.shape[1] // 2:x.shape[1] // 2 + 1])


def test_restore_with_context_sees_the_neighbours_and_not_the_batch_borders():
    from medgap.harmonize.restore import restore_slices

    x = _slices(7) * torch.linspace(0.6, 1.0, 7)[:, None, None, None]  # every slice differs
    one_batch = restore_slices(_SumOfNeighbours(), x, batch=64, context=1)
    small_batches = restore_slices(_SumOfNeighbours(), x, batch=2, context=1)
    assert torch.allclose(one_batch, small_batches)
    fg = x > 0.05
    # the middle slices change (their neighbours differ); a 2D net of the same kind sees nothing else
    assert float((one_batch - x)[fg].abs().max()) > 1e-3
    assert torch.allclose(restore_slices(_SumOfNeighbours(), x, context=0), x)


def test_training_with_context_feeds_neighbours_and_the_model_round_trips(tmp_path):
    from medgap.errors import ConfigError

    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=["train.steps=2", "restore.steps=3", "restore.context=1",
                                                              "train.checkpoint_every=1000"])
    train(cfg, None, tmp_path / "m", device="cpu", progress=False)
    h = Harmonizer.load(tmp_path / "m", device="cpu")
    first = next(m for m in h.restorer.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 3 and h.cfg.restore.context == 1
    x = _slices(5, size=(64, 80))
    out = h.harmonize_slices(x, torch.linspace(0.3, 0.7, 5))
    assert out.shape == x.shape and torch.isfinite(out).all()
    with pytest.raises(ConfigError, match="restore.context"):
        Harmonizer.load(tmp_path / "m", device="cpu", overrides=("restore.context=0",))


def _ball_volume(n=24, size=(40, 40)):
    """Consecutive slices of a ball of two tissues, in [0, 1]."""
    zz, yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, size[0]),
                                torch.linspace(-1, 1, size[1]), indexing="ij")
    r = zz**2 + yy**2 + xx**2
    x = torch.where(r < 0.9, 0.5, 0.0) + torch.where(r < 0.3, 0.4, 0.0)
    return x[:, None].clamp(0, 1), (r < 0.9)[:, None]


def test_bias3d_varies_along_z_and_keeps_background_and_is_seeded():
    from medgap.harmonize.simulate import simulate_volume

    x, brain = _ball_volume()
    y = simulate_volume(x, "bias3d", seed=2)
    assert torch.equal(y, simulate_volume(x, "bias3d", seed=2)) and not torch.equal(y, simulate_volume(x, "bias3d", seed=3))
    assert float(y[~brain].abs().max()) == 0.0 and float(y.max()) == pytest.approx(1.0)
    ratio = (y / x.clamp_min(1e-6))[brain[:, 0:1].expand_as(y)].reshape(-1)
    per_slice = [float((y[i] / x[i].clamp_min(1e-6))[brain[i]].mean()) for i in range(4, 20)]
    assert max(per_slice) / min(per_slice) > 1.1  # the field changes from slice to slice
    assert float(ratio.std()) > 0.02
    g = simulate_volume(x, "bias3d+gamma1.3", seed=2)
    assert torch.allclose(g[brain], y[brain] ** 1.3)
    with pytest.raises(ValueError, match="unknown volume change"):
        simulate_volume(x, "gamma1.3")


def test_n4_over_the_volume_undoes_a_3d_bias_field():
    from medgap.harmonize.baselines import n4_log_field, n4_volume
    from medgap.harmonize.simulate import simulate_volume

    x, brain = _ball_volume(n=32, size=(64, 64))
    y = simulate_volume(x, "bias3d", seed=5)
    corrected = n4_volume(y, brain)
    assert corrected.shape == y.shape and float(corrected[~brain].abs().max()) == 0.0

    def spread(v):  # relative spread of the inner tissue: 0 for a flat (unbiased) tissue
        inner = v[(x > 0.8)]
        return float(inner.std() / inner.mean())

    assert spread(corrected) < 0.7 * spread(y)
    log_field, fg = n4_log_field(y, brain)
    assert abs(float(log_field[fg].mean())) < 1e-4 and float(log_field[fg].std()) > 0.1
    assert torch.equal(n4_volume(y, brain, weight=0.0), y)
    # too little to fit: returned unchanged
    assert n4_log_field(y[:2], brain[:2]) is None and torch.equal(n4_volume(y[:2], brain[:2]), y[:2])


def test_3d_bias_stage_acts_on_a_3d_field_only_and_for_the_default_only(restore_model):
    from medgap.harmonize.simulate import simulate_volume

    out, _ = restore_model
    x, brain = _ball_volume(n=32, size=(64, 80))
    on = Harmonizer.load(out, device="cpu")
    off = Harmonizer.load(out, device="cpu", overrides=("restore.bias_correction=none",))
    assert on.cfg.restore.bias_correction == "n4"
    y = simulate_volume(x, "bias3d", seed=5)
    assert torch.equal(off.correct_bias_3d(y, brain), y) and off.last_bias is None
    assert torch.equal(on.correct_bias_3d(y, brain, "nyul"), y)
    corrected = on.correct_bias_3d(y, brain)
    assert on.last_bias["weight"] == 1.0 and not torch.equal(corrected, y)
    assert torch.equal(on.correct_bias_3d(x, brain), x)  # no field: the gate stays shut
    assert on.last_bias["weight"] == 0.0 and on.last_bias["field_spread"] < 0.08
    from medgap.errors import ConfigError

    with pytest.raises(ConfigError, match="bias_gate"):
        Harmonizer.load(out, device="cpu", overrides=("restore.bias_gate=[0.08, 0.05]",))


def test_restoration_trains_on_a_given_change_when_asked():
    from medgap.harmonize.config import RestoreConfig
    from medgap.harmonize.restore import train_restoration

    seen = []

    def change(clean, g):
        seen.append(clean.shape)
        return simulate(clean, "gamma1.3", seed=int(torch.randint(1000, (1,), generator=g)))

    cfg = HarmonizeConfig()
    net, summary = train_restoration(_slices(6, size=(32, 32)), RestoreConfig(steps=3, batch_size=2), cfg.data,
                                     change=change)
    assert len(seen) == 3 and seen[0][0] == 2 and summary["steps"] == 3


def test_slice_levelling_removes_gain_jumps_and_keeps_smooth_changes():
    from medgap.harmonize.baselines import level_slices

    x, brain = _ball_volume(n=32, size=(40, 40))
    g = torch.Generator().manual_seed(0)
    jumps = 1 + 0.15 * (2 * torch.rand(32, generator=g) - 1)  # a gain per slice
    y = (x * jumps[:, None, None, None]).clamp(0, 1)
    out = level_slices(y)

    def levels(v):
        return torch.stack([s[s > 0.05].quantile(0.95) if (s > 0.05).sum() >= 50 else torch.tensor(float("nan"))
                            for s in v[:, 0]])

    ok = ~torch.isnan(levels(x))
    before, after = levels(y)[ok] / levels(x)[ok], levels(out)[ok] / levels(x)[ok]
    assert float(after.diff().abs().mean()) < 0.6 * float(before.diff().abs().mean())
    assert float(out[~brain].abs().max()) == 0.0
    ramp = (x * torch.linspace(0.8, 1.2, 32)[:, None, None, None]).clamp(0, 1)  # smooth along z: kept
    inner = ok.clone()
    inner[:3] = inner[-3:] = False  # the neighbours are one-sided at the ends
    assert torch.allclose(level_slices(ramp)[inner], ramp[inner], atol=0.03)
    assert torch.equal(level_slices(x), x)  # no jumps: the gate stays shut
    assert torch.equal(level_slices(y[:2]), y[:2])  # too few slices to compare: unchanged
    odd_even = (x * (1 + 0.08 * (1 - 2 * (torch.arange(32) % 2)).float())[:, None, None, None]).clamp(0, 1)
    fixed = level_slices(odd_even)  # an interleaved acquisition's odd/even gain
    assert float((fixed - x)[brain].abs().mean()) < 0.3 * float((odd_even - x)[brain].abs().mean())


def test_the_volume_stage_levels_slices_for_the_default_only(restore_model):
    out, _ = restore_model
    x, brain = _ball_volume(n=32, size=(64, 80))
    y = (x * (1 + 0.1 * torch.tensor([(-1) ** i for i in range(32)], dtype=torch.float32))[:, None, None, None]).clamp(0, 1)
    on = Harmonizer.load(out, device="cpu", overrides=("restore.bias_correction=none",))
    off = Harmonizer.load(out, device="cpu", overrides=("restore.bias_correction=none", "restore.level_slices=false"))
    assert on.cfg.restore.level_slices and not off.cfg.restore.level_slices
    assert not torch.equal(on.volume_stage(y, brain), y)
    assert on.last_levelling["slices_changed"] > 10 and 0.05 < on.last_levelling["largest_gain_change"] < 0.2
    assert torch.equal(off.volume_stage(y, brain), y) and off.last_levelling is None
    assert torch.equal(on.volume_stage(y, brain, "nyul"), y) and on.last_levelling is None
