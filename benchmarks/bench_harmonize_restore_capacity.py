"""Does a longer-trained or wider blind restoration net close the gap to the per-change supervised model?

    python benchmarks/bench_harmonize_restore_capacity.py [--quick] [--factor 3] [--width 2]

The default cpu-small model (training seed 0: flow + blind restoration net, 10 x 300 steps) is
trained once. Then, on the same training slices and seed: the blind net again with ``factor`` times
the steps, and with ``width`` times the channels of every level (random scanner changes, as the
default), and the supervised net of bench_harmonize_supervised for WM-darker-than-GM (its largest
gap) with the default's steps and size, ``factor`` times the steps, and ``width`` times the
channels. Evaluated on VALIDATION only (Colin 27, every second slice, each randomly moved): PSNR in
the brain per in-family change -- for the blind nets as the default applies them (gated) and, in
brackets, the net's own estimate (ungated) -- the gate and doubt values of the blind nets, and the
target correction ``r0`` in whose units the gate and the doubt check are set.

One seed: this is a diagnosis of why the default stays below the supervised bound (issue
"harmonize"), not a result.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import markdown_table

from medgap.harmonize.api import Harmonizer
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.evaluate import heldout_subject_slices
from medgap.harmonize.restore import restore_slices, train_restoration
from medgap.harmonize.simulate import COMBINED_DOMAINS, HARD_DOMAINS, simulate
from medgap.harmonize.train import load_training_set, train
from medgap.metrics import psnr

IN_FAMILY = ["gamma1.3"] + HARD_DOMAINS + COMBINED_DOMAINS


def restoration(h: Harmonizer, data, steps: int, domain: str | None = None, width: int = 1):
    """A restoration net on the model's training slices: blind (random changes) or for ``domain`` only;
    ``width`` times the default's channels."""
    cfg, thr = h.cfg, h.cfg.harmonize.foreground_threshold
    if width != 1:
        cfg = cfg.replace(restore={"channels": [width * c for c in cfg.restore.channels]})

    def change(clean: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return simulate(clean, domain, seed=int(torch.randint(2**31 - 1, (1,), generator=g)), threshold=thr)

    t = time.perf_counter()
    net, summary = train_restoration(data.slices, cfg.restore.replace(steps=steps), cfg.data, seed=cfg.train.seed,
                                     counts=data.counts, threshold=thr, change=change if domain else None)
    summary["seconds"] = time.perf_counter() - t
    if domain:
        return Harmonizer(h.model, cfg.replace(restore={"output": "network"}), "cpu", h.info, net), summary
    info = copy.deepcopy(h.info)
    info["extras"]["train"]["restore"] = summary
    return Harmonizer(h.model, cfg, "cpu", info, net), summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer steps, two changes")
    parser.add_argument("--factor", type=int, default=3, help="how many times the default's restoration steps")
    parser.add_argument("--width", type=int, default=2, help="how many times the default's channels")
    args = parser.parse_args()
    flow_steps, every = (60, 6) if args.quick else (300, 2)
    domains = ["gamma1.3", "wm_dark"] if args.quick else IN_FAMILY
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=[f"train.steps={flow_steps}", "train.seed=0",
                                                              "train.checkpoint_every=100000"])
    steps = cfg.restore_steps
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, None, Path(tmp) / "model", progress=False)
        default = Harmonizer.load(Path(tmp) / "model", device="cpu")
    data = load_training_set(cfg)
    longer, long_summary = restoration(default, data, args.factor * steps)
    wider, wide_summary = restoration(default, data, steps, width=args.width)
    variants = {f"{steps} steps": (steps, 1), f"{args.factor * steps} steps": (args.factor * steps, 1),
                f"{args.width}x channels": (steps, args.width)}
    special = {name: restoration(default, data, n, "wm_dark", width)[0] for name, (n, width) in variants.items()}
    truth, brain, pos = heldout_subject_slices(cfg.flow.image_size, every=every, seed=1, name="colin27")

    def score(x: torch.Tensor) -> float:
        return float(np.mean([psnr(a, b, mask=m) for a, b, m in zip(x[:, 0], truth[:, 0], brain[:, 0])]))

    blind = {f"default ({steps} steps)": default, f"blind, {args.factor * steps} steps": longer,
             f"blind, {args.width}x channels": wider}
    rows, means = [], {name: [] for name in ["nyul", *blind]}
    for i, domain in enumerate(domains):
        xs = simulate(truth, domain, seed=1 + i)
        base = default.harmonize_slices(xs, pos, "nyul")
        row = [domain, f"{score(base):.2f}"]
        means["nyul"].append(float(row[1]))
        for name, h in blind.items():
            value = score(h.harmonize_slices(xs, pos, "restore"))
            own = score(restore_slices(h.restorer, base, h.cfg.harmonize.foreground_threshold))
            means[name].append(value)
            doubt = "-" if h.last_doubt is None else f"{h.last_doubt:.2f}"
            row.append(f"{value:.2f} [{own:.2f}] (gate {h.last_gate:.2f}, doubt {doubt})")
        if domain == "wm_dark":
            row += [f"{score(special[n].harmonize_slices(xs, pos, 'restore')):.2f}" for n in special]
        else:
            row += [""] * len(special)
        rows.append(row)
    rows.append(["**mean**"] + [f"{np.mean(means[name]):.2f}" for name in means] + [""] * len(special))
    r0 = {name: h.info["extras"]["train"]["restore"]["target_correction"] for name, h in blind.items()}
    print(f"cpu-small, training seed 0, {flow_steps} flow steps; restoration nets on the default's training "
          f"slices. VALIDATION (Colin 27) only. PSNR in the brain (dB); for the blind nets the gate "
          f"weight and the doubt (mirror disagreement, units of r0), in brackets the net's own estimate "
          f"(ungated); the last three columns: the supervised net for wm_dark alone (bench_harmonize_supervised's "
          f"bound) with the default's steps and size, {args.factor} x the steps, {args.width} x the channels.")
    print()
    print(markdown_table(["change", "nyul", *blind, *[f"wm_dark supervised, {name}" for name in special]], rows))
    print()
    print("Target correction r0 (the net's mean correction of the clean target slices; the gate opens from "
          "2-4 r0, the doubt check closes from 3-3.5 r0): "
          + ", ".join(f"{name} {value:.4f}" for name, value in r0.items())
          + f". Training the {args.factor * steps}-step blind net took {long_summary['seconds']:.0f} s, the "
          f"{args.width} x wider one {wide_summary['seconds']:.0f} s (the default's: "
          f"{default.info['extras']['train']['restore']['seconds']:.0f} s).")


if __name__ == "__main__":
    main()
