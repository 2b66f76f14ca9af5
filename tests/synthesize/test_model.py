"""Architecture of HA-GAN: parameter counts, shapes, and the folded up-convolution."""

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medgap.errors import ConfigError
from medgap.synthesize.model import HAGAN, Architecture, UpConv3d
from medgap.training.runtime import count_parameters


def _counts(size: int) -> dict[str, int]:
    with torch.device("meta"):  # no memory for 80 M parameters
        m = HAGAN(Architecture(size=size))
    return {
        "G": count_parameters(m.generator),
        "D": count_parameters(m.discriminator),
        "EG": count_parameters(m.encoder_global),
        "EH": count_parameters(m.encoder_high),
        "all": count_parameters(m),
        "fc": count_parameters(m.generator.common.fc),
    }


def test_parameter_counts_256_match_publication():
    c = _counts(256)
    for key, expected in {"G": 52.5e6, "D": 7.4e6, "EG": 19.7e6, "EH": 0.16e6, "all": 79.7e6, "fc": 33.6e6}.items():
        assert abs(c[key] - expected) / expected < 0.01, (key, c[key])


@pytest.mark.parametrize("size,total", [(32, 74.7e6), (64, 78.7e6), (128, 79.6e6)])
def test_total_parameters_match_publication_table(size, total):
    assert abs(_counts(size)["all"] - total) / total < 0.01


@pytest.mark.parametrize("c_out", [1, 3, 9])  # < 8: parity-phase convolution; >= 8: transposed convolution
def test_upconv_equals_upsample_then_conv(c_out):
    torch.manual_seed(0)
    layer = UpConv3d(5, c_out)
    x = torch.randn(2, 5, 4, 6, 5, requires_grad=True)
    ref = F.conv3d(F.interpolate(x, scale_factor=2), layer.conv.weight, layer.conv.bias, padding=1)
    out = layer(x)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(ref)
    grads_ref = torch.autograd.grad(ref, (x, layer.conv.weight, layer.conv.bias), g)
    grads = torch.autograd.grad(out, (x, layer.conv.weight, layer.conv.bias), g)
    for a, b in zip(grads, grads_ref):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_through_every_network(size):
    torch.manual_seed(0)
    arch = Architecture(size=size, width=0.125, latent_dim=16, num_classes=2)
    m = HAGAN(arch)
    z, lab = torch.randn(2, 16), torch.tensor([0, 1])
    slab, low = m.generator(z, arch.positions - 1, lab)  # last slab
    assert slab.shape == (2, 1, size // 8, size, size)
    assert low.shape == (2, 1, size // 4, size // 4, size // 4)
    logit, cls = m.discriminator(slab, low, torch.tensor([4, 8]))
    assert logit.shape == (2,) and cls.shape == (2, 2)
    full = m.generator.generate(z, lab)
    assert full.shape == (2, 1, size, size, size) and full.abs().max() <= 1
    assert m.encode(full).shape == (2, 16)
    assert m.encoder_high(slab).shape == (2, arch.feature_channels, size // 32, size // 4, size // 4)


def test_conditioning_changes_output():
    torch.manual_seed(0)
    m = HAGAN(Architecture(size=32, width=0.125, latent_dim=8, num_classes=3)).generator
    z = torch.randn(1, 8).repeat(2, 1)
    out = m.generate(z, torch.tensor([0, 2]))
    assert (out[0] - out[1]).abs().max() > 1e-4


@pytest.mark.parametrize("bad", [48, 16, 100])
def test_size_must_be_power_of_two(bad):
    with pytest.raises(ConfigError, match="size"):
        Architecture(size=bad)


def test_full_resolution_baseline_shapes_and_width():
    from medgap.synthesize.baseline import FullResGAN

    torch.manual_seed(0)
    arch = Architecture(size=32, width=0.125, latent_dim=8)
    gan = FullResGAN(arch)
    out = gan.sample(2, seed=0)
    assert out.shape == (2, 32, 32, 32) and abs(out).max() <= 1
    assert gan.discriminator(torch.from_numpy(out)[:, None]).shape == (2,)
    # Same generator layers as HA-GAN minus the low-res branch.
    hagan_g = HAGAN(arch).generator
    assert count_parameters(gan.generator) == count_parameters(hagan_g) - count_parameters(hagan_g.low)


def test_full_resolution_baseline_scores_at_checkpoints_without_counting_them():
    from medgap.synthesize.baseline import train_baseline
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.synthesize.data import TrainingSet

    cfg = SynthesizeConfig(model={"size": 32, "width": 0.125, "latent_dim": 8}, data={"augment": False},
                           train={"batch_size": 2, "steps": 6, "precision": "fp32"})
    vols = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 32)).astype(np.float32)
    data = TrainingSet(vols, np.zeros(2, np.int64), ["t1"], 2.0)
    seen = []

    def score(model, steps, seconds):
        seen.append((steps, seconds, model.training))
        time.sleep(0.3)  # scoring time must not count as training time

    start = time.perf_counter()
    _, steps, seconds = train_baseline(data, cfg, checkpoints=[0.0, 1e-9, 1e9], on_checkpoint=score)
    wall = time.perf_counter() - start
    assert steps == 6
    assert [s for s, _, _ in seen] == [1, 1]  # both reached after the first iteration; 1e9 s never
    assert not any(training for _, _, training in seen)  # scored in eval mode
    assert wall - seconds >= 0.55 and seconds >= seen[-1][1]
