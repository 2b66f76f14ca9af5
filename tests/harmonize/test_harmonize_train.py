"""Training data from the bundled ICBM152 target, and training under torchrun."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.model import SliceFlow
from medgap.harmonize.train import fit_statistics, load_training_set

from harmonize_helpers import TINY
from process_helpers import run_ok



def test_icbm_training_set_with_holdout_and_wm_labels():
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=["data.holdout_every=4", "data.cohort=icbm152"])
    data = load_training_set(cfg)
    h, w = cfg.flow.image_size
    assert data.slices.shape[1:] == (1, h, w) and data.wm is not None
    held = data.heldout
    n_all = len(data.slices) + len(held["slices"])
    assert len(held["slices"]) == pytest.approx(n_all / 4, abs=1)
    assert 0 <= float(data.position.min()) and float(data.position.max()) <= 1
    # white matter is a sizeable part of the brain and brighter than the rest of it in T1
    brain = data.masks.bool()
    frac = data.wm[brain].float().mean()
    assert 0.15 < frac < 0.6
    assert data.slices[data.wm].mean() > data.slices[brain & ~data.wm].mean() + 0.1
    model = SliceFlow.from_config(cfg.flow, cfg.data.template_bins)
    fit_statistics(model, data)
    # templates follow the anatomy: inferior and superior templates differ, and each is a plausible slice
    assert (model.templates[0] - model.templates[-1]).abs().mean() > 0.02
    assert model.quantiles[:, -1].min() > 0.5 and torch.all(model.quantiles.diff(dim=1) >= 0)


def test_training_reduces_bits_per_dim(tmp_path, target_file):
    from medgap.harmonize.train import load_training_set, train

    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=TINY + ["train.steps=30", "train.lr=3e-3",
                                                                      "train.checkpoint_every=100"])
    train(cfg, load_training_set(cfg, [target_file]), tmp_path / "m", device="cpu", progress=False)
    rows = (tmp_path / "m.run" / "metrics.csv").read_text().splitlines()[1:]
    bpd = [float(r.split(",")[1]) for r in rows]
    assert np.mean(bpd[-5:]) < np.mean(bpd[:5]) - 0.3


@pytest.mark.slow
def test_training_under_torchrun_equals_one_process(tmp_path, target_file):
    """2 processes x B/2 train the same flow as 1 process x B (batch norm off: its statistics are
    per process), and the restoration net (trained on the main rank) is the same too."""
    from safetensors.torch import load_file

    sets = []
    for item in TINY + ["flow.batch_norm=false", "restore.steps=3"]:
        sets += ["--set", item]
    train = ["-m", "medgap", "harmonize", "train", str(target_file), "--device", "cpu", *sets]
    for out, launcher in (("one", []), ("ddp", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"])):
        run_ok([sys.executable, *launcher, *train, "--out", str(tmp_path / out)], tmp_path)
    meta = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert meta["extras"]["train"]["world_size"] == 2
    for name in ("flow", "restore"):
        one = load_file(str(tmp_path / "one" / f"{name}.safetensors"))
        ddp = load_file(str(tmp_path / "ddp" / f"{name}.safetensors"))
        assert one.keys() == ddp.keys()
        for key in one:
            torch.testing.assert_close(ddp[key], one[key], rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")
