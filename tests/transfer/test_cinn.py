import pytest
import torch
import torch.nn as nn

from medgap.training.runtime import count_parameters
from medgap.transfer.cinn import REAL, SIM, ImageCINN, SpectralCINN, domain_code, soft_labels
from medgap.transfer.config import TransferConfig
from medgap.transfer.discriminators import MultiScaleDiscriminator, SpectralDiscriminator
from medgap.transfer.model import build_model


def _randomise(module: nn.Module, scale: float = 0.05) -> None:
    """Give every coupling a non-trivial map (the couplings start as the identity)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=g))


def test_paper_hsi_parameter_count():
    cfg = TransferConfig.from_preset("paper")
    model = build_model(cfg, 100, 10)
    assert count_parameters(model.generator) == 4_088_800  # FrEIA 0.2 counts its permutation matrices
    assert count_parameters(model.generator, trainable_only=True) == 3_288_800
    assert len(model.generator.inn) == 40
    assert sum(c is not None for c in model.generator.inn.conditions) == 30


def test_paper_pat_parameter_count_on_meta_device():
    cfg = TransferConfig.from_preset("paper", overrides=["modality=pat"])
    with torch.device("meta"):
        model = build_model(cfg, 16, 7, (128, 256))
    assert count_parameters(model.generator) == 183_062_368
    assert count_parameters(model.generator, trainable_only=True) == 113_685_088


def test_spectral_cinn_is_invertible_and_conditioned():
    torch.manual_seed(0)
    net = SpectralCINN(40, n_classes=5, n_blocks=8, n_conditional=6, hidden=64)
    _randomise(net)
    x, y = torch.randn(256, 40), torch.randint(0, 5, (256,))
    with torch.no_grad():
        z, logdet = net.encode(x, SIM, y)
        back = net.decode(z, SIM, y)
        assert ((back - x).norm(dim=1) / x.norm(dim=1)).max() < 1e-4
        assert logdet.shape == (256,)
        other = net.decode(z, REAL, y)
        assert (other - x).abs().mean() > 1e-3  # the domain code changes the output
        t1, t2 = net.transfer(x, SIM, y), net.transfer(x, SIM, y)
        assert torch.equal(t1, t2)  # deterministic without training noise
        # per-sample domains in one batch give the same result as two separate passes
        mixed = net.transfer(torch.cat([x, x]), torch.cat([torch.zeros(256), torch.ones(256)]).long(), torch.cat([y, y]))
        torch.testing.assert_close(mixed[:256], t1)
        torch.testing.assert_close(mixed[256:], net.transfer(x, REAL, y))


def test_image_cinn_is_invertible():
    torch.manual_seed(0)
    net = ImageCINN(8, (32, 64), n_classes=7, blocks_per_scale=(2, 1, 1), width=16, adaptive_scales=(2,))
    _randomise(net, 0.02)
    x, seg = torch.randn(2, 8, 32, 64), torch.randint(0, 7, (2, 32, 64))
    with torch.no_grad():
        z, _ = net.encode(x, REAL, seg)
        assert z.shape == (2, 128, 8, 16)
        zc = z.clone()
        back = net.decode(z, REAL, seg)
        assert torch.equal(z, zc)  # decode leaves its input alone (FrEIA's Haar inverse works in place)
    assert (back - x).norm() / x.norm() < 1e-4


def test_conditions():
    code = domain_code((4, 2), SIM, 0.1, stochastic=True)
    assert torch.all(code[:, 0] >= 0.9) and torch.allclose(code.sum(1), torch.ones(4))
    assert torch.allclose(domain_code((4, 2), REAL, 0.1, stochastic=False), torch.tensor([[0.05, 0.95]] * 4))
    y = torch.tensor([0, 2, 1])
    s = soft_labels(y, 3, 0.5, stochastic=True)
    assert torch.allclose(s.sum(1), torch.ones(3)) and torch.equal(s.argmax(1), y)
    seg = soft_labels(torch.zeros(2, 4, 5, dtype=torch.long), 3, 0.2, stochastic=False)
    assert seg.shape == (2, 3, 4, 5)


def test_discriminators_shapes():
    assert SpectralDiscriminator(40)(torch.randn(3, 40))[0].shape == (3, 40)
    outs = MultiScaleDiscriminator(8, dim=8, n_layers=2, n_scales=3)(torch.randn(2, 8, 32, 64))
    assert [o.shape[-2:] for o in outs] == [(8, 16), (4, 8), (2, 4)]


def test_indexed_permutation_equals_freia_block():
    import FrEIA.modules as Fm
    import numpy as np

    from medgap.transfer.cinn import PermutedAllInOneBlock

    def dense(a, b):
        return nn.Sequential(nn.Linear(a, 16), nn.ReLU(), nn.Linear(16, b))

    def conv(a, b):
        return nn.Sequential(nn.Conv2d(a, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, b, 3, padding=1))

    for dims, cond, subnet in (((12,), (3,), dense), ((8, 4, 6), (2, 4, 6), conv)):
        np.random.seed(1)
        torch.manual_seed(1)
        ref = Fm.AllInOneBlock([dims], [cond], subnet_constructor=subnet, global_affine_init=0.7)
        ours = PermutedAllInOneBlock([dims], [cond], subnet_constructor=subnet, global_affine_init=0.7)
        np.random.seed(2)
        other = PermutedAllInOneBlock([dims], [cond], subnet_constructor=subnet, global_affine_init=0.7)
        ours.load_state_dict(ref.state_dict())
        other.load_state_dict(ref.state_dict())  # a loaded block takes the saved permutation
        x, c = torch.randn(5, *dims), torch.randn(5, *cond)
        for block in (ours, other):
            for rev in (False, True):
                (y_ref,), j_ref = ref((x,), c=[c], rev=rev)
                (y,), j = block((x,), c=[c], rev=rev)
                torch.testing.assert_close(y, y_ref)
                torch.testing.assert_close(j, j_ref)


def test_package_api_names_are_the_functions_not_submodules():
    import medgap.transfer as T
    import medgap.transfer.trainer  # noqa: F401  (a submodule import must not shadow the function)
    from medgap.transfer.evaluation import evaluate
    from medgap.transfer.apply import apply_transfer
    from medgap.transfer.trainer import train

    assert T.train is train and T.evaluate is evaluate and T.apply_transfer is apply_transfer
    assert T.TransferConfig.from_preset("paper").hsi.n_blocks == 40


def _grads_after_step(net, x, y):
    z, logdet = net.encode(x, SIM, y, stochastic=False)
    back = net.decode(z, REAL, y)
    (0.5 * z.pow(2).sum(1) - logdet + back.pow(2).sum(1)).mean().backward()
    return [p.grad.clone() for p in net.parameters() if p.requires_grad]


def _net_batch_and_eager_grads():
    torch.manual_seed(0)
    net = SpectralCINN(20, n_classes=3, n_blocks=3, n_conditional=2, hidden=16)
    _randomise(net)
    x, y = torch.randn(32, 20), torch.randint(0, 3, (32,))
    expected = _grads_after_step(net, x, y)
    net.zero_grad()
    return net, x, y, expected


def test_compile_blocks_falls_back_to_eager_when_compiling_fails(monkeypatch):
    net, x, y, expected = _net_batch_and_eager_grads()

    def broken_compile(fn, **kw):
        def run(*a, **k):
            raise RuntimeError("no C compiler")
        return run
    monkeypatch.setattr(torch, "compile", broken_compile)
    net.compile_blocks()
    with pytest.warns(UserWarning, match="running eagerly"):
        got = _grads_after_step(net, x, y)
    for a, b in zip(expected, got):
        torch.testing.assert_close(a, b)



@pytest.mark.slow
def test_compiled_blocks_match_eager():
    net, x, y, expected = _net_batch_and_eager_grads()
    net.compile_blocks()
    got = _grads_after_step(net, x, y)
    for a, b in zip(expected, got):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
