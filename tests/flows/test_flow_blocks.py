"""Invertibility and log-determinants of the flow blocks, checked against brute-force Jacobians."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medgap.flows import ActNorm, FlowSequence, InvConv1x1, MultiScaleFlow, RQSCoupling, Squeeze


def _randomize(module: nn.Module, scale: float = 0.3, seed: int = 0) -> nn.Module:
    """Move every parameter away from its identity-like init so the checks are not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _brute_logdet(block, x: torch.Tensor) -> torch.Tensor:
    """log|det J| of block at one sample x (1, C, H, W), via the full Jacobian."""
    def f(v):
        y, _ = block(v.view_as(x))
        return y.reshape(-1)
    jac = torch.autograd.functional.jacobian(f, x.reshape(-1))
    return torch.linalg.slogdet(jac)[1]


BLOCKS = {
    "squeeze": lambda: Squeeze(2),
    "actnorm": lambda: ActNorm(4),
    "invconv": lambda: InvConv1x1(4, torch.Generator().manual_seed(3)),
    "coupling": lambda: RQSCoupling(4, hidden=8, blocks=1, bins=5, bound=3.0),
    "coupling_odd": lambda: RQSCoupling(3, hidden=8, blocks=2, bins=4, bound=2.0),
    "sequence": lambda: FlowSequence([ActNorm(4), InvConv1x1(4), RQSCoupling(4, hidden=6, blocks=1)]),
}


@pytest.mark.parametrize("name", list(BLOCKS))
def test_block_inverts_and_logdet_matches_jacobian(name):
    torch.manual_seed(0)
    block = BLOCKS[name]().double()
    if name != "squeeze":
        _randomize(block, scale=0.5 if name.startswith("coupling") else 0.3)
    block.eval()
    c = 3 if name == "coupling_odd" else 4
    # std 1.5 puts some values in the linear tails outside [-bound, bound]
    x = 1.5 * torch.randn(2, c, 4, 4, dtype=torch.float64)
    y, ld = block(x)
    assert y.shape == (2, c * 4, 2, 2) if name == "squeeze" else y.shape == x.shape
    x_rec, ld_rev = block(y, rev=True)
    assert torch.allclose(x_rec, x, atol=1e-8), (x_rec - x).abs().max()
    assert torch.allclose(ld, -ld_rev, atol=1e-8)
    for i in range(2):
        brute = _brute_logdet(block, x[i:i + 1])
        assert torch.allclose(ld[i], brute, atol=1e-6), (ld[i], brute)


def test_coupling_is_not_identity_after_randomizing():
    block = _randomize(RQSCoupling(4, hidden=8, blocks=1), 0.5).double().eval()
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    y, ld = block(x)
    assert (y - x).abs().max() > 1e-2
    assert ld.abs().max() > 1e-2
    assert torch.equal(y[:, 2:], x[:, 2:])  # conditioning half passes through


def test_jac_false_gives_same_output():
    block = _randomize(RQSCoupling(4, hidden=8, blocks=1), 0.5).eval()
    x = torch.randn(2, 4, 4, 4)
    assert torch.equal(block(x)[0], block(x, jac=False)[0])


def test_actnorm_data_init_and_saved_state():
    torch.manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(16, 3, 5, 5)
    norm = ActNorm(3).train()
    y, _ = norm(x)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    state = norm.state_dict()
    assert bool(state["initialized"])
    # a reloaded block keeps the initialised values instead of re-initialising on new data
    fresh = ActNorm(3).train()
    fresh.load_state_dict(state)
    y2, _ = fresh(10 * x)
    assert torch.allclose(fresh.log_scale, norm.log_scale)
    assert not torch.allclose(y2.std(), torch.tensor(1.0), atol=0.1)


def test_invconv_composed_weight_matches_conv():
    conv = _randomize(InvConv1x1(5, torch.Generator().manual_seed(1))).double()
    x = torch.randn(2, 5, 3, 3, dtype=torch.float64)
    y, _ = conv(x)
    w = conv.weight()
    expected = torch.einsum("oc,bchw->bohw", w, x) + conv.bias[:, None, None]
    assert torch.allclose(y, expected)
    assert not torch.allclose(w.abs(), torch.eye(5, dtype=torch.float64))  # permutation or LU is not identity


def test_multiscale_flow_inverts_and_logdet_matches_jacobian():
    torch.manual_seed(0)
    flow = MultiScaleFlow((8, 8), levels=2, steps=2, hidden=8, blocks=1, bins=4).double()
    flow.initialize(torch.randn(8, 1, 8, 8, dtype=torch.float64))
    _randomize(flow, 0.2)
    flow.eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    z, ld = flow(x)
    assert z.shape == (2, 64)
    x_rec, ld_rev = flow(z, rev=True)
    assert torch.allclose(x_rec, x, atol=1e-7)
    assert torch.allclose(ld, -ld_rev, atol=1e-7)

    def f(v):
        return flow(v.view(1, 1, 8, 8))[0].reshape(-1)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(f, x[i].reshape(-1))
        assert torch.allclose(ld[i], torch.linalg.slogdet(jac)[1], atol=1e-6)


def test_multiscale_rejects_bad_sizes():
    with pytest.raises(ValueError, match="divisible"):
        MultiScaleFlow((12, 8), levels=3)
    flow = MultiScaleFlow((8, 8), levels=2, steps=1, hidden=4, blocks=1)
    with pytest.raises(ValueError, match="expected input"):
        flow(torch.randn(1, 1, 16, 8))


def test_paper_flow_parameter_count():
    flow = MultiScaleFlow((144, 176), levels=4, steps=7, hidden=96, blocks=3, bins=8, bound=3.0)
    n = sum(p.numel() for p in flow.parameters())
    assert abs(n - 14_486_534) <= 0.01 * 14_486_534
    assert n == 14_486_534  # the architecture reproduces the reference exactly


def test_fast_spline_matches_zuko():
    from zuko.transforms import MonotonicRQSTransform

    from medgap.flows.blocks import _RQSpline

    g = torch.Generator().manual_seed(0)
    w, h, d = (3 * torch.randn(5, 7, 8, generator=g), 3 * torch.randn(5, 7, 8, generator=g),
               torch.randn(5, 7, 7, generator=g))
    x = 4 * torch.randn(5, 7, generator=g)
    # The same function: in float64 the two agree to rounding.
    w64, h64, d64, x64 = (t.double() for t in (w, h, d, x))
    y1, l1 = _RQSpline(w64, h64, d64, bound=3.0).call_and_ladj(x64)
    y2, l2 = MonotonicRQSTransform(w64, h64, d64, bound=3.0).call_and_ladj(x64)
    assert torch.allclose(y1, y2, rtol=0, atol=1e-10) and torch.allclose(l1, l2, rtol=0, atol=1e-10)
    # In float32 the knots are rounded differently (exp/sum vs softmax). The position inside a bin
    # is (x - x_k) / w_k with w_k >= ~slope * bin size, so a knot's rounding error (eps * bound) is
    # amplified at most ~1/slope = 1e3 times in y and the log-det: that is the bound, whatever the
    # CPU's vector kernels (AVX2 and AVX512 round differently).
    y1, l1 = _RQSpline(w, h, d, bound=3.0).call_and_ladj(x)
    tolerance = 4 * torch.finfo(torch.float32).eps * 3.0 / 1e-3
    assert (y1.double() - y2).abs().max() < tolerance and (l1.double() - l2).abs().max() < tolerance
