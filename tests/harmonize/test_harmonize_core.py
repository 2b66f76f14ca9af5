"""Config presets, slice pipeline, optimiser maths, baselines and simulated domains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgap.errors import ConfigError, InputError
from medgap.harmonize.baselines import histogram_match, lowfreq_replace
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.data import prepare_volume, restore_volume
from medgap.harmonize.model import SliceFlow
from medgap.harmonize.optimize import (HarmonizeOptions, distance, distance_grad, edge_masks, harmonize_batch)
from medgap.harmonize.simulate import DOMAINS, OUT_OF_FAMILY, OUT_OF_FAMILY_COMBINED, simulate

from harmonize_helpers import TINY, lps_affine, phantom


def test_paper_preset_parameter_count():
    cfg = HarmonizeConfig.from_preset("paper").check()
    model = SliceFlow.from_config(cfg.flow)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 14_486_534) / 14_486_534 < 0.01
    assert tuple(cfg.flow.image_size) == (144, 176) and cfg.flow.levels == 4 and cfg.flow.steps == 7


def test_cpu_small_is_small_and_bad_values_name_the_field():
    cfg = HarmonizeConfig.from_preset("cpu-small").check()
    n = sum(p.numel() for p in SliceFlow.from_config(cfg.flow).parameters())
    assert n < 1_000_000
    with pytest.raises(ConfigError, match="harmonize.ncc"):
        HarmonizeConfig.from_preset("cpu-small", overrides=["harmonize.ncc=spearman"])
    with pytest.raises(ConfigError, match="flow.image_size"):
        HarmonizeConfig.from_preset("cpu-small", overrides=["flow.image_size=[60,80]"]).check()


def test_slices_roundtrip_on_input_grid_and_background_untouched():
    vol = phantom()
    stack = prepare_volume(vol, lps_affine(), (32, 32))
    assert stack.slices.shape[1:] == (1, 32, 32)
    assert 0 <= stack.slices.min() and stack.slices.max() <= 1
    # detail="keep" adds only the change made on the model grid: no change, no difference at all
    assert np.array_equal(restore_volume(stack, stack.slices, vol), vol)
    back = restore_volume(stack, stack.slices, vol, detail="resample")
    assert back.shape == vol.shape
    fg = vol > 0.05 * vol.max()
    assert np.array_equal(back[~fg], vol[~fg])  # background bit-identical
    # the round trip through the model grid keeps the image (resampling error only)
    assert np.abs(back - vol)[fg].mean() < 0.05
    # a changed slice comes back in the right place: brighten one model slice
    mod = stack.slices.copy()
    mod[0] = np.where(mod[0] > 0, 1.0, 0)
    changed = restore_volume(stack, mod, vol, detail="resample")
    diff = np.argwhere(np.abs(changed - back) > 1e-6)
    assert len(diff) and len(np.unique(diff[:, 2])) == 1  # one acquisition slice (axis 2 is S here)
    kept = restore_volume(stack, mod, vol)
    diff = np.argwhere(np.abs(kept - vol) > 1e-6)
    assert len(diff) and len(np.unique(diff[:, 2])) == 1
    # the brightened slice comes back bright, with the source's fine structure on top
    z = diff[0, 2]
    assert kept[..., z][fg[..., z]].mean() > vol[..., z][fg[..., z]].mean() + 0.05 * vol.max()


@pytest.mark.parametrize("bad, problem", [
    (np.zeros((10, 10, 10), np.float32), "no foreground"),
    (np.full((10, 10, 10), np.nan, np.float32), "NaN"),
    (np.zeros((10, 10), np.float32), "3D"),
])
def test_prepare_rejects_bad_volumes(bad, problem):
    with pytest.raises(InputError, match=problem):
        prepare_volume(bad, np.eye(4), (16, 16))


@pytest.mark.parametrize("form", ["pearson", "cosine"])
def test_closed_form_gradient_matches_autograd(form):
    torch.manual_seed(0)
    xs = torch.rand(3, 1, 12, 14)
    x = torch.rand(3, 1, 12, 14, dtype=torch.float64).requires_grad_(True)
    opts = HarmonizeOptions(ncc=form, b1=7.0, b2=0.3)
    m = edge_masks(xs.double())
    distance(x, xs.double(), m, opts).sum().backward()
    assert torch.allclose(distance_grad(x.detach(), xs.double(), m, opts), x.grad, atol=1e-10)


def test_edge_mask_percentile_is_taken_inside_the_foreground():
    xs = torch.zeros(1, 1, 40, 40)
    xs[0, 0, 15:25, 15:25] = torch.linspace(0.3, 1.0, 10)[None]  # 94% background
    m = edge_masks(xs)
    fg = (xs > 0.05).expand_as(m)
    assert m[fg].any()  # the reference's whole-slice percentile would give an empty mask here
    assert not m[fg].all()


def _toy_flow():
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=TINY)
    flow = SliceFlow.from_config(cfg.flow, 4)
    flow.flow.initialize(torch.rand(8, 1, 16, 16) - 0.5)
    flow.templates.copy_(torch.rand(4, 1, 16, 16))
    return flow.eval()


def test_harmonize_batch_is_deterministic_and_moves_toward_the_source():
    flow = _toy_flow()
    xs = torch.from_numpy(phantom((16, 16, 4))[:, :, 1:3].transpose(2, 0, 1)[:, None].copy())
    xs = xs / xs.max()
    pos = torch.tensor([0.3, 0.6])
    opts = HarmonizeOptions(iterations=5, b1=2e4)
    a = harmonize_batch(flow, xs, pos, opts)
    b = harmonize_batch(flow, xs, pos, opts)
    assert torch.equal(a, b)
    assert a.shape == xs.shape and a.min() >= 0 and a.max() <= 1
    x0 = flow.template_for(pos)
    m = edge_masks(xs)
    assert (distance(a, xs, m, opts) < distance(x0, xs, m, opts)).all()
    zero = harmonize_batch(flow, xs, pos, HarmonizeOptions(iterations=0))
    fg = xs > 0.05
    assert torch.allclose(zero[fg], x0.clamp(0, 1)[fg])
    assert torch.equal(a[~fg], xs[~fg])  # background untouched


def test_autograd_mode_runs_and_reduces_objective():
    flow = _toy_flow()
    xs = torch.rand(2, 1, 16, 16)
    pos = torch.tensor([0.1, 0.9])
    opts = HarmonizeOptions(iterations=4, mode="autograd", lr=0.05)
    out = harmonize_batch(flow, xs, pos, opts)
    m = edge_masks(xs)
    x0 = flow.template_for(pos)
    assert distance(out, xs, m, opts).sum() < distance(x0, xs, m, opts).sum()


def test_histogram_matching_undoes_gamma_and_lowfreq_keeps_background():
    truth = torch.from_numpy(phantom((32, 32, 3), seed=2)[:, :, 1][None, None].copy())
    truth = truth / truth.max()
    levels = torch.linspace(0, 1, 101)
    q = torch.quantile(truth[truth > 0.05], levels)[None]
    src = simulate(truth, "gamma1.5")
    hm = histogram_match(src, truth, q)
    assert (hm - truth).abs().mean() < 0.5 * (src - truth).abs().mean()
    lf = lowfreq_replace(src, truth, q)
    assert torch.equal(lf[src <= 0.05], src[src <= 0.05])


@pytest.mark.parametrize("domain", DOMAINS + OUT_OF_FAMILY + OUT_OF_FAMILY_COMBINED)
def test_simulated_domains_stay_in_range_and_change_the_image(domain):
    x = torch.from_numpy(phantom((32, 32, 3), seed=3)[:, :, 1][None, None].copy())
    x = x / x.max()
    y = simulate(x, domain, seed=0)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 + 1e-6
    assert (y - x).abs().max() > 0.02


def test_out_of_family_changes_do_what_their_physics_says():
    r = torch.linspace(-1, 1, 48)
    rr = (r[:, None] / 0.4) ** 2 + (r[None, :] / 0.45) ** 2  # a clean two-tissue ellipse, no noise
    x = (torch.where(rr < 1, 0.55, 0.0) + torch.where(rr < 0.4, 0.45, 0.0))[None, None]
    fg = x > 0.05
    dura = simulate(x, "dura", seed=0)
    rim = (torch.nn.functional.max_pool2d(fg.float(), 7, stride=1, padding=3) > 0) & ~fg
    assert dura[rim].mean() > 0.5 and torch.equal(dura[~rim & ~fg], x[~rim & ~fg])  # a bright rim, nothing else
    ghost = simulate(x, "ghost", seed=0)
    shifted = torch.roll(x, 24, dims=-2)  # the half-FOV ghost along the phase-encode (row) direction
    assert (ghost[~fg & (shifted > 0.3)]).mean() > 0.05 > (ghost[~fg & (shifted <= 0.05)]).mean()
    thick = simulate(x, "thick", seed=0)
    # slices are (left-right, front-back): edges crossed front-back are smeared over the 5-pixel slab,
    # edges crossed left-right stay sharp
    levels = torch.tensor([0.0, 0.55, 1.0])

    def smeared(profile):
        return int(((profile[:, None] - levels[None]).abs().min(1).values > 0.02).sum())

    assert smeared(thick[0, 0, 24, :]) >= 8 and smeared(thick[0, 0, :, 24]) <= 1
    assert torch.equal(simulate(x, "gibbs+gamma1.3", seed=5), simulate(x, "gibbs+gamma1.3", seed=5))


def test_wm_dark_reverses_tissue_order():
    x = torch.from_numpy(phantom((32, 32, 3), seed=3)[:, :, 1][None, None].copy())
    x = x / x.max()
    y = simulate(x, "wm_dark")
    wm, gm = x > 0.9, (x > 0.4) & (x < 0.7)
    assert x[wm].mean() > x[gm].mean() and y[wm].mean() < y[gm].mean()


def test_unknown_detail_mode_is_refused_before_any_work(tmp_path):
    from medgap.harmonize.api import Harmonizer
    from medgap.io import Volume

    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=["flow.image_size=[32,32]", "flow.levels=2"])
    h = Harmonizer(SliceFlow.from_config(cfg.flow, cfg.data.template_bins), cfg, "cpu")
    with pytest.raises(InputError, match="detail"):
        h.harmonize_volume(Volume(phantom(), lps_affine(), None, None), detail="sharp")
    with pytest.raises(ValueError, match="detail"):
        restore_volume(prepare_volume(phantom(), lps_affine(), (32, 32)), np.zeros((1, 1, 32, 32)), phantom(),
                       detail="sharp")


def test_n4_before_histogram_matching_removes_a_bias_field_histogram_matching_keeps():
    from medgap.harmonize.baselines import n4_histogram_match

    truth = torch.from_numpy(phantom((64, 64, 3), seed=4)[:, :, 1][None, None].copy())
    truth = truth / truth.max()
    q = torch.quantile(truth[truth > 0.05], torch.linspace(0, 1, 101))[None]
    ramp = torch.linspace(0.6, 1.4, 64)[None, None, :, None] * torch.ones(1, 1, 64, 64)
    src = truth * ramp
    hm, n4 = histogram_match(src, truth, q), n4_histogram_match(src, truth, q)
    fg = truth > 0.05
    assert (n4 - truth)[fg].abs().mean() < 0.7 * (hm - truth)[fg].abs().mean()
    assert torch.equal(n4[~fg], src[~fg])


def test_structure_terms_ignore_the_sources_contrast_and_descend():
    torch.manual_seed(0)
    xs = torch.from_numpy(phantom((16, 16, 4))[:, :, 1:3].transpose(2, 0, 1)[:, None].copy()).double()
    xs = xs / xs.max()
    x = (xs + 0.1 * torch.rand_like(xs)).clamp(0, 1)
    m = edge_masks(xs)
    for structure in ("ngf", "local_ncc"):
        opts = HarmonizeOptions(structure=structure, b1=1.0, b2=0.0)
        d = distance(x, xs, m, opts)
        # a brighter, stretched source (local NCC and NGF) and an inverted one (NGF) cost the same
        assert torch.allclose(distance(x, 0.2 + 2.0 * xs, m, opts), d, atol=1e-4)
        if structure == "ngf":
            assert torch.allclose(distance(x, 1.0 - xs, m, opts), d, atol=1e-6)
        # global NCC does see the inversion
        ncc = HarmonizeOptions(structure="ncc", b1=1.0, b2=0.0)
        assert (distance(x, 1.0 - xs, m, ncc) > 100 * distance(x, xs, m, ncc)).all()
        # a gradient step (taken under inference mode, as the optimiser does) lowers the term
        with torch.inference_mode():
            g = distance_grad(x, xs, m, opts)
        assert torch.isfinite(g).all()
        assert (distance(x - 0.05 * g / g.abs().max(), xs, m, opts) < d).all()
    with pytest.raises(ConfigError, match="harmonize.structure"):
        HarmonizeConfig.from_preset("cpu-small", overrides=["harmonize.structure=mi"])


def test_standardized_start_is_n4_and_histogram_matching():
    from medgap.harmonize.baselines import n4_histogram_match

    flow = _toy_flow()
    xs = torch.from_numpy(phantom((16, 16, 4))[:, :, 1:3].transpose(2, 0, 1)[:, None].copy())
    xs = xs / xs.max()
    pos = torch.tensor([0.3, 0.6])
    out = harmonize_batch(flow, xs, pos, HarmonizeOptions(iterations=0, init="standardized"))
    expected = n4_histogram_match(xs, flow.template_for(pos), flow.quantiles[[1, 2]], 0.05)
    fg = xs > 0.05
    assert torch.allclose(out[fg], expected.clamp(0, 1)[fg])
    moved = harmonize_batch(flow, xs, pos, HarmonizeOptions(iterations=3, init="standardized", structure="ngf"))
    assert torch.isfinite(moved).all() and not torch.equal(moved, out)
