"""Slab-wise G^H generation equals whole-volume inference."""

import pytest
import torch

from medgap.errors import MedgapError
from medgap.synthesize.model import Architecture, Generator
from medgap.synthesize.slabwise import estimate_bytes, generate_slabwise, plan_chunk


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    g = Generator(Architecture(size=64, width=0.25, latent_dim=32)).eval()
    with torch.no_grad():  # non-trivial GroupNorm affine, so wrong statistics would show
        g.high.norm1.weight.uniform_(0.5, 1.5)
        g.high.norm1.bias.uniform_(-0.3, 0.3)
    return g


@pytest.mark.parametrize("chunk,keep", [(1, False), (1, True), (3, False), (5, True), (16, True)])
def test_slabwise_equals_whole_volume(generator, chunk, keep):
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = generator.generate(z)
    out = generate_slabwise(generator, z, chunk=chunk, keep_first=keep)
    assert out.shape == whole.shape
    assert (out - whole).abs().max().item() <= 1e-5


def test_wrong_statistics_would_be_detected(generator):
    # Per-slab GroupNorm (what naive slab-wise inference does) differs: the test above can fail.
    z = torch.randn(1, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = generator.generate(z)
        feats = generator.common(z)
        naive = torch.cat([generator.high(feats[:, :, i : i + 4]) for i in range(0, 16, 4)], dim=2)
    assert (naive - whole).abs().max().item() > 1e-3


def test_plan_respects_budget():
    with torch.device("meta"):
        g = Generator(Architecture(size=256))
    chunk, keep = plan_chunk(g, 1.9 * 2**30)
    assert estimate_bytes(g, chunk, keep) <= 1.9 * 2**30
    small_chunk, _ = plan_chunk(g, 1.2 * 2**30)
    assert small_chunk < chunk
    with pytest.raises(MedgapError, match="max-memory"):
        plan_chunk(g, 0.3 * 2**30)
