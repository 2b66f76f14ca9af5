"""Mixed precision: bfloat16 products where they are safe, float32 everywhere else."""

import pytest
import torch
from torch import nn

from medgap.errors import ConfigError
from medgap.training.precision import AutocastSequential, autocast, compute_dtype, set_precision
from medgap.transfer.cinn import REAL, SIM, SpectralCINN


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="precision"):
        compute_dtype("fp16", "cpu")
    assert compute_dtype("fp32", "cpu") is None


def test_autocast_sequential_switches_and_keeps_weights(native_bf16):
    torch.manual_seed(0)
    net = AutocastSequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64))
    keys = list(net.state_dict())
    x = torch.randn(500, 64)
    exact = net(x)
    assert exact.dtype == torch.float32
    set_precision(net, "bf16", "cpu")
    mixed = net(x)
    assert mixed.dtype == torch.float32  # bfloat16 inside, float32 out
    assert not torch.equal(mixed, exact)  # the products really ran in bfloat16 ...
    assert (mixed - exact).abs().max() < 0.05 * exact.abs().max()  # ... to about 3 digits
    assert list(net.state_dict()) == keys  # the same weights load either way
    set_precision(net, "fp32", "cpu")
    assert torch.equal(net(x), exact)


def test_bf16_subnets_keep_the_cinn_data_path_float32(native_bf16):
    # Only the conditioners compute in bfloat16: the coupling itself stays float32, so almost every
    # round trip is as exact as in float32 even with non-trivial (random) subnets. A float32 rounding
    # difference can flip a bfloat16 rounding of a subnet input, so the worst sample is off by more:
    # bf16 is a training mode, and applying a model (float32) is exact again.
    torch.manual_seed(0)
    net = SpectralCINN(100, 10, n_blocks=12, n_conditional=9, hidden=128, affine_init=1.0)
    for m in net.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    set_precision(net, "bf16", "cpu")
    x, y = torch.randn(1000, 100), torch.randint(0, 10, (1000,))
    with torch.no_grad():
        z, _ = net.encode(x, SIM, y)
        back = net.decode(z, SIM, y)
        assert z.dtype == torch.float32
        err = (back - x).norm(dim=1) / x.norm(dim=1)
        assert err.median() < 1e-5 and err.max() < 1e-3
        set_precision(net, "fp32", "cpu")
        z32, _ = net.encode(x, SIM, y)
        err32 = (net.decode(z32, SIM, y) - x).norm(dim=1) / x.norm(dim=1)
        assert err32.max() < 1e-5
    assert not torch.equal(z, z32) and torch.allclose(z, z32, atol=0.05)
    assert net.transfer(x[:10], SIM, y[:10]).dtype == torch.float32 and REAL == 1


def test_autocast_context_is_a_no_op_for_fp32(native_bf16):
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with autocast("fp32", "cpu"):
        assert (a @ b).dtype == torch.float32
    with autocast("bf16", "cpu"):
        assert (a @ b).dtype == torch.bfloat16


def test_bf16_without_native_support_falls_back_to_fp32(monkeypatch):
    import medgap.training.precision as precision

    monkeypatch.setattr(precision, "bf16_supported", lambda device: False)
    with pytest.warns(UserWarning, match="hundreds of times slower, so this run uses fp32"):
        assert compute_dtype("bf16", "cpu") is None  # never emulated


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch):
    import medgap.training.precision as precision

    for flags, native in (({"avx2", "fma"}, False), ({"avx512f", "avx512_bf16"}, True), ({"amx_bf16"}, True)):
        monkeypatch.setattr(precision, "_cpu_flags", lambda flags=flags: flags)
        assert precision.bf16_supported("cpu") is native


def test_auto_precision_is_bf16_only_where_native():
    import warnings

    from medgap.training.precision import bf16_supported, compute_dtype

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns about emulated bf16
        got = compute_dtype("auto", "cpu")
    assert got == (torch.bfloat16 if bf16_supported("cpu") else None)
