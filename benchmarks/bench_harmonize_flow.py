"""Can the target flow help the default harmonisation? Three measurements, over training seeds.

For each seed the default cpu-small model (flow + restoration net) is trained on the real T1
cohort as in bench_harmonize_quality, and a second, "background" flow of the same size on the
same slices pushed through random scanner changes (medgap.harmonize.restore's
random_scanner_change, four draws per slice). On the held-out real subject (Colin 27, every
second slice, randomly rotated/scaled/shifted) under the 13 simulated source changes:

1. Ranking: how often a changed slice gets *more* bits/dim than its untouched version -- under
   the target flow, after Nyul standardisation (equal histograms), and under the likelihood
   ratio target - background (a known fix for flows that reward smooth, simple images). A prior
   that is to pull sources to the target must rank the untouched slice first (100 %).
2. Headroom of a flow-chosen gate: the default mixes Nyul and the network's estimate with one
   weight w per volume, set by the size of the network's correction. PSNR of that gate, of the
   best w in hindsight (0, 0.1, .., 1: the most any choice of w can give), and of the w the
   target flow or the likelihood ratio prefer (fewest bits/dim).
3. MAP refinement through the flow: starting from the default's result x0, Adam on
   ``a * NLL_flow(x) + |x - x0|^2`` (gradients through the flow, 20 steps); a = 0 is x0.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from machine import markdown_table, mean_sd_cell

from medgap.harmonize.api import Harmonizer
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.evaluate import heldout_subject_slices
from medgap.harmonize.augment import random_scanner_change
from medgap.harmonize.restore import correction_size
from medgap.harmonize.simulate import COMBINED_DOMAINS, DOMAINS, simulate
from medgap.harmonize.train import TrainingSet, load_training_set, train
from medgap.metrics import psnr

WEIGHTS = np.linspace(0, 1, 11)
MAP_WEIGHTS = (10.0, 100.0)


def background_set(data: TrainingSet, draws: int = 4, seed: int = 0) -> TrainingSet:
    """The target slices under ``draws`` random scanner changes each."""
    g = torch.Generator().manual_seed(seed)
    changed = torch.cat([torch.cat([random_scanner_change(data.slices[i:i + 64], g)
                                    for i in range(0, len(data.slices), 64)]) for _ in range(draws)])
    return TrainingSet(changed, data.masks.repeat(draws, 1, 1, 1), data.position.repeat(draws),
                       ["random scanner changes of the cohort"])


def map_refine(h: Harmonizer, x0: torch.Tensor, weight: float, steps: int = 20, lr: float = 0.003) -> torch.Tensor:
    """Adam on weight * (flow NLL per dim) + |x - x0|^2 over the foreground, from x0."""
    flow = h.model
    for p in flow.parameters():
        p.requires_grad_(False)
    fg = x0 > h.cfg.harmonize.foreground_threshold
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        xc = torch.where(fg, x, x0)
        z, log_det = flow.flow(flow.to_flow(xc))
        nll = (0.5 * (z**2).sum(dim=1) - log_det) / flow.dim
        loss = weight * nll.sum() + ((xc - x0) ** 2 * fg).sum()
        loss.backward()
        opt.step()
    return torch.where(fg, x.detach().clamp(0, 1), x0)


def run_seed(seed: int, tmp: Path, steps: int, every: int, domains: list[str], refine: bool) -> dict:
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=[f"train.steps={steps}", f"train.seed={seed}",
                                                              "train.checkpoint_every=100000"])
    train(cfg, None, tmp / f"model{seed}", progress=False)
    data = load_training_set(cfg)
    train(cfg.replace(restore={"steps": 0}), background_set(data, seed=seed), tmp / f"background{seed}",
          progress=False)
    h = Harmonizer.load(tmp / f"model{seed}", device="cpu")
    bg = Harmonizer.load(tmp / f"background{seed}", device="cpu")
    truth, brain, pos = heldout_subject_slices(cfg.flow.image_size, every=every, seed=seed + 1)

    def score(x):
        return psnr_mean(x, truth, brain)

    def ratio(x):
        return h.score_slices(x) - bg.score_slices(x)

    t_bpd, t_ratio = h.score_slices(truth), ratio(truth)
    out: dict = {}
    for i, d in enumerate(domains):
        xs = simulate(truth, d, seed=seed + 1 + i)
        base = h.harmonize_slices(xs, pos, "nyul")
        gated = h.harmonize_slices(xs, pos, "restore")
        est, size = correction_size(h.restorer, base)
        mixes = [torch.where(base > 0.05, (base + w * (est - base)).clamp(0, 1), base) for w in WEIGHTS]
        psnrs = [score(m) for m in mixes]
        bpds = [float(h.score_slices(m).mean()) for m in mixes]
        ratios = [float(ratio(m).mean()) for m in mixes]
        r0 = h.info["extras"]["train"]["restore"]["target_correction"]
        r = {"correction": size / r0, "source_ranked": float((h.score_slices(xs) > t_bpd).float().mean()),
             "nyul_ranked": float((h.score_slices(base) > t_bpd).float().mean()),
             "ratio_source_ranked": float((ratio(xs) > t_ratio).float().mean()),
             "ratio_nyul_ranked": float((ratio(base) > t_ratio).float().mean()),
             "gate": score(gated), "oracle": max(psnrs), "flow_pick": psnrs[int(np.argmin(bpds))],
             "ratio_pick": psnrs[int(np.argmin(ratios))]}
        if refine:
            for a in MAP_WEIGHTS:
                r[f"map{a:g}"] = score(map_refine(h, gated, a))
        out[d] = r
    return out


def psnr_mean(x: torch.Tensor, truth: torch.Tensor, brain: torch.Tensor) -> float:
    return float(np.mean([psnr(a, b, mask=m) for a, b, m in zip(x[:, 0], truth[:, 0], brain[:, 0])]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one seed, fewer steps and slices, no MAP")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    seeds = [0] if args.quick else list(range(args.seeds))
    steps, every = (60, 6) if args.quick else (300, 2)
    domains = DOMAINS + COMBINED_DOMAINS
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_seed(s, Path(tmp), steps, every, domains, refine=not args.quick) for s in seeds]
    print(f"cpu-small, {steps} flow steps (target and background flow) + {10 * steps} restoration steps, "
          f"{len(seeds)} training seed(s); held-out Colin 27, one slice in {every}. Mean +- sd over seeds.")
    print()
    print("**1. Does the flow rank the untouched slice above its changed versions?** Share of slices whose "
          "changed version gets MORE bits/dim than the untouched one (100 % = always ranked right):")
    print()
    keys = [("source_ranked", "target flow: source"), ("nyul_ranked", "target flow: after Nyul"),
            ("ratio_source_ranked", "ratio target - background: source"),
            ("ratio_nyul_ranked", "ratio: after Nyul")]
    rows = [[d] + [mean_sd_cell([r[d][k] for r in runs], 100, 0) + " %" for k, _ in keys] for d in domains]
    rows.append(["**mean**"] + [mean_sd_cell([np.mean([r[d][k] for d in domains]) for r in runs], 100, 0) + " %"
                                for k, _ in keys])
    print(markdown_table(["change"] + [t for _, t in keys], rows))
    print()
    print("**2. Headroom of the gate** (PSNR in the brain, dB): the default's gate, the best weight in hindsight, "
          "and the weight the target flow / the likelihood ratio prefer; first column: the size of the network's "
          "correction in units of its size on the target's own slices (the gate opens from 2 to 4):")
    print()
    keys = [("correction", "net's correction / r0"), ("gate", "default gate"), ("oracle", "best w in hindsight"),
            ("flow_pick", "w the flow prefers"),
            ("ratio_pick", "w the ratio prefers")]
    if "map10" in runs[0][domains[0]]:
        keys += [(f"map{a:g}", f"MAP through the flow, a = {a:g}") for a in MAP_WEIGHTS]
    rows = [[d] + [mean_sd_cell([r[d][k] for r in runs]) for k, _ in keys] for d in domains]
    rows.append(["**mean**"] + [mean_sd_cell([np.mean([r[d][k] for d in domains]) for r in runs]) for k, _ in keys])
    print(markdown_table(["change"] + [t for _, t in keys], rows))
    print()
    gain = [np.mean([r[d]["oracle"] - r[d]["gate"] for d in domains]) for r in runs]
    print(f"The most any per-volume choice of w could add over the default's gate: {mean_sd_cell(gain)} dB "
          "on the mean.")


if __name__ == "__main__":
    main()
