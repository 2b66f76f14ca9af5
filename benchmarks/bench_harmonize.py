"""Speed of blind harmonisation with the paper flow (random weights; timing only).

Measures, in the same run: the machine's fp32 matmul ceiling; one flow pass
(forward and inverse) over a stack of 144x176 slices in this implementation
and in a reference-style variant (autograd enabled, log-dets computed on
every pass, the spline's parameters strided along the last axis and zuko's
stock knots: how a straightforward port of the reference runs); the
10-iteration harmonisation of the stack; one training step at batch 8 and the
log-likelihood of 8 slices. Per-subject times for 50 slices are extrapolated
linearly from the stack when ``--quick`` uses fewer slices.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from zuko.transforms import MonotonicRQSTransform

from machine import machine_info, markdown_table, matmul_gflops

from medgap.flows import blocks
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.model import SliceFlow
from medgap.harmonize.optimize import HarmonizeOptions, harmonize_batch

GFLOP_PER_SLICE_PASS = 59.0  # paper flow, 144x176, one pass (issue's figure)


def _reference_spline(self, x_b):
    b, _, h, w = x_b.shape
    k = self.bins
    p = self.net(x_b).view(b, self.n_transform, 3 * k - 1, h, w).permute(0, 1, 3, 4, 2)
    s = 1.0 / math.sqrt(self.net.hidden)
    return MonotonicRQSTransform(p[..., :k] * s, p[..., k:2 * k] * s, p[..., 2 * k:], bound=self.bound,
                                 slope=self.min_slope)


def _reference_forward(self, x, rev=False, jac=True):
    x_a, x_b = x[:, :self.n_transform], x[:, self.n_transform:]
    spline = _reference_spline(self, x_b)
    x_a = x_a.permute(0, 2, 3, 1)
    x_a = x_a.permute(0, 3, 1, 2)  # the reference layout: (B, t, H, W) against strided params
    if not rev:
        y_a, ladj = spline.call_and_ladj(x_a)
    else:
        y_a = spline._inverse(x_a)
        ladj = -spline.call_and_ladj(y_a)[1]
    return torch.cat([y_a, x_b], dim=1), ladj.flatten(1).sum(1)


def timed(fn, repeats=1):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="8 slices instead of 50")
    args = parser.parse_args()
    n = 8 if args.quick else 50
    torch.manual_seed(0)
    info = machine_info()
    ceiling = matmul_gflops()
    cfg = HarmonizeConfig.from_preset("paper")
    model = SliceFlow.from_config(cfg.flow, cfg.data.template_bins)
    model.flow.initialize(torch.rand(4, 1, 144, 176) - 0.5)
    model.templates.copy_(torch.rand_like(model.templates))
    model.eval()
    x = torch.rand(n, 1, 144, 176)
    pos = torch.linspace(0, 1, n)

    def ours_pass():
        with torch.inference_mode():
            model.decode(model.encode(x))

    orig = blocks.RQSCoupling.forward

    def ref_pass():
        blocks.RQSCoupling.forward = _reference_forward
        try:
            y = model.to_flow(x)
            z, _ = model.flow(y)
            model.flow(z, rev=True)
        finally:
            blocks.RQSCoupling.forward = orig

    t_ref = timed(ref_pass)
    t_ours = timed(ours_pass)
    opts = HarmonizeOptions()
    t_harm = timed(lambda: harmonize_batch(model, x, pos, opts))
    ceiling_after = matmul_gflops()

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    xb = torch.rand(8, 1, 144, 176)

    def step():
        loss = model(xb)
        opt.zero_grad()
        loss.backward()
        opt.step()

    t_step = timed(step)
    model.eval()
    t_ll = timed(lambda: torch.inference_mode()(model.bits_per_dim)(xb))

    scale = 50 / n
    passes = 2 * opts.iterations
    rows = [
        ["flow pass (fwd+inv), reference-style", f"{t_ref * scale:.1f}", "1.00",
         f"{2 * GFLOP_PER_SLICE_PASS * n / t_ref:.0f}"],
        ["flow pass (fwd+inv), medgap", f"{t_ours * scale:.1f}", f"{t_ref / t_ours:.2f}",
         f"{2 * GFLOP_PER_SLICE_PASS * n / t_ours:.0f}"],
        [f"harmonise 50 slices, {opts.iterations} iterations, medgap", f"{t_harm * scale:.1f}",
         f"{t_ref * opts.iterations / t_harm:.2f}", f"{passes * GFLOP_PER_SLICE_PASS * n / t_harm:.0f}"],
        [f"harmonise, reference-style (= {opts.iterations} x pass)", f"{t_ref * scale * opts.iterations:.1f}",
         "1.00", ""],
    ]
    print(markdown_table(["machine", ""], [[k, v] for k, v in info.items()]))
    print()
    print(f"fp32 matmul ceiling measured in this run: {ceiling:.0f} GFLOP/s before, {ceiling_after:.0f} after "
          f"(shared machine: other jobs ran at the same time).")
    print()
    print(f"Paper flow (14,486,534 parameters, random weights), {n} slices of 144x176 timed"
          f"{', extrapolated to 50' if n != 50 else ''}; ~{GFLOP_PER_SLICE_PASS:.0f} GFLOP per slice per pass.")
    print()
    print(markdown_table(["task (50-slice subject)", "seconds", "speed-up vs reference-style",
                          "achieved GFLOP/s"], rows))
    print()
    print(markdown_table(["other", "seconds", "issue goal (s)"], [
        ["training step, batch 8 (paper flow)", f"{t_step:.1f}", "5.5"],
        ["log-likelihood of 8 slices", f"{t_ll:.1f}", "(ref 4.3)"],
    ]))
    print()
    print(f"Achieved / ceiling for the medgap pass: {2 * GFLOP_PER_SLICE_PASS * n / t_ours / ceiling:.2f}.")


if __name__ == "__main__":
    main()
