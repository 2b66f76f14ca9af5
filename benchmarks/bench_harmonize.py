"""Speed of blind harmonisation with the paper flow (random weights; timing only).

Measures, in the same run: the machine's fp32 matmul ceiling; one flow pass
(forward and inverse) over a stack of 144x176 slices in this implementation
and in a reference-style variant (autograd enabled, log-dets computed on
every pass, the spline's parameters strided along the last axis and zuko's
stock knots, conditioners in NCHW layout: how a straightforward port of the
reference runs) and against the reference implementation's own times on this
machine (from the issue); the 10-iteration harmonisation of the stack; one training step at batch 8 and the
log-likelihood of 8 slices; the harmonisation and the training step again with ``precision=bf16`` (the
conditioners in bfloat16) against the reference-style port timed in this run, and the bf16 ceilings. Per-subject times for 50 slices are extrapolated
linearly from the stack when ``--quick`` uses fewer slices.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from zuko.transforms import MonotonicRQSTransform

from machine import conv2d_gflops, machine_info, markdown_table, matmul_gflops

from medgap.flows import blocks
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.model import SliceFlow
from medgap.harmonize.optimize import HarmonizeOptions, harmonize_batch
from medgap.training.precision import set_precision

GFLOP_PER_SLICE_PASS = 59.0  # paper flow, 144x176, one pass (issue's figure)
# The reference implementation timed on this machine (2 cores), from the issue.
REFERENCE = {"subject": 614.0, "pass": 26.5, "step": 11.1, "loglik": 4.3}


def _reference_spline(self, x_b):
    b, _, h, w = x_b.shape
    k = self.bins
    p = self.net(x_b).view(b, self.n_transform, 3 * k - 1, h, w).permute(0, 1, 3, 4, 2)
    s = 1.0 / math.sqrt(self.net.hidden)
    return MonotonicRQSTransform(p[..., :k] * s, p[..., k:2 * k] * s, p[..., 2 * k:], bound=self.bound,
                                 slope=self.min_slope)


def _reference_net(self, x):
    return self.final(self.blocks(self.initial(x)))  # NCHW throughout, as the reference


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


def volume_seconds() -> tuple[float, int]:
    """End to end: a 1 mm ICBM152 T1 (197x233x189) written as NIfTI, harmonised with a cpu-small
    flow (freshly initialised: the cost does not depend on the weights), written back."""
    import tempfile
    from pathlib import Path

    from medgap.data.sample import load_icbm152
    from medgap.harmonize.api import Harmonizer
    from medgap.io import write_nifti

    cfg = HarmonizeConfig.from_preset("cpu-small")
    model = SliceFlow.from_config(cfg.flow, cfg.data.template_bins)
    model.flow.initialize(torch.rand(16, 1, *cfg.flow.image_size) - 0.5)
    h = Harmonizer(model, cfg, "cpu")
    brain = load_icbm152(1.0)
    with tempfile.TemporaryDirectory() as tmp:
        src = write_nifti(Path(tmp) / "t1.nii.gz", brain.t1.data, like=brain.t1)
        t = time.perf_counter()
        h.apply_file(src, Path(tmp) / "harmonized.nii.gz")
        seconds = time.perf_counter() - t
    n_slices = len(h.prepare(brain.t1))
    return seconds, n_slices


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="8 slices instead of 50")
    args = parser.parse_args()
    n = 8 if args.quick else 50
    torch.manual_seed(0)
    info = machine_info()
    ceiling = matmul_gflops()
    conv_ceiling = conv2d_gflops()
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

    orig, orig_net = blocks.RQSCoupling.forward, blocks.ConvResidualNet.forward

    def ref_pass():
        blocks.RQSCoupling.forward = _reference_forward
        blocks.ConvResidualNet.forward = _reference_net
        try:
            y = model.to_flow(x)
            z, _ = model.flow(y)
            model.flow(z, rev=True)
        finally:
            blocks.RQSCoupling.forward, blocks.ConvResidualNet.forward = orig, orig_net

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

    def ref_step():
        blocks.RQSCoupling.forward = _reference_forward
        blocks.ConvResidualNet.forward = _reference_net
        try:
            step()
        finally:
            blocks.RQSCoupling.forward, blocks.ConvResidualNet.forward = orig, orig_net

    t_ref_step = timed(ref_step)
    set_precision(model, "bf16", "cpu")
    t_step_bf16 = timed(step)
    model.eval()
    t_harm_bf16 = timed(lambda: harmonize_batch(model, x, pos, opts))
    set_precision(model, "fp32", "cpu")
    t_ll = timed(lambda: torch.inference_mode()(model.bits_per_dim)(xb))
    bf16_matmul = matmul_gflops(dtype=torch.bfloat16)
    bf16_conv = conv2d_gflops(dtype=torch.bfloat16)

    t_volume, n_volume = volume_seconds()

    scale = 50 / n
    passes = 2 * opts.iterations
    subject_gflop = passes * GFLOP_PER_SLICE_PASS * 50
    step_gflop = 3 * GFLOP_PER_SLICE_PASS * 8  # forward + backward (input and weight gradients)
    rows = [
        ["flow pass (fwd+inv), reference-style port, this run", f"{t_ref * scale:.1f}", "",
         f"{t_ref / t_ours:.2f}", f"{2 * GFLOP_PER_SLICE_PASS * n / t_ref:.0f}"],
        ["flow pass (fwd+inv), medgap", f"{t_ours * scale:.1f}", f"{2 * REFERENCE['pass']:.1f}",
         f"{2 * REFERENCE['pass'] / (t_ours * scale):.2f}", f"{2 * GFLOP_PER_SLICE_PASS * n / t_ours:.0f}"],
        [f"harmonise 50 slices, {opts.iterations} iterations, medgap", f"{t_harm * scale:.1f}",
         f"{REFERENCE['subject']:.0f}", f"{REFERENCE['subject'] / (t_harm * scale):.2f}",
         f"{passes * GFLOP_PER_SLICE_PASS * n / t_harm:.0f}"],
        ["training step, batch 8", f"{t_step:.1f}", f"{REFERENCE['step']}", f"{REFERENCE['step'] / t_step:.2f}",
         f"{step_gflop / t_step:.0f}"],
        ["log-likelihood of 8 slices", f"{t_ll:.1f}", f"{REFERENCE['loglik']}", f"{REFERENCE['loglik'] / t_ll:.2f}",
         f"{GFLOP_PER_SLICE_PASS * 8 / t_ll:.0f}"],
    ]
    print(markdown_table(["machine", ""], [[k, v] for k, v in info.items()]))
    print()
    print(f"fp32 ceilings measured in this run: matmul 2048^3 {ceiling:.0f} GFLOP/s before, {ceiling_after:.0f} "
          f"after; Conv2d 96->96 3x3 on 8x72x88 (the flow's main layer, channels-last) {conv_ceiling:.0f} GFLOP/s.")
    print()
    print(f"Paper flow (14,486,534 parameters, random weights), {n} slices of 144x176 timed"
          f"{', extrapolated to 50' if n != 50 else ''}; ~{GFLOP_PER_SLICE_PASS:.0f} GFLOP per slice per pass. "
          "Reference seconds: the reference implementation timed on this machine (issue 3).")
    print()
    print(markdown_table(["task (50-slice subject)", "medgap seconds", "reference seconds",
                          "speed-up vs reference", "achieved GFLOP/s"], rows))
    print()
    best = max(ceiling, ceiling_after)
    print("What the goals would need (FLOPs / the best matmul ceiling of this run):")
    print()
    print(markdown_table(["goal", "seconds", "FLOPs (GFLOP)", "needs GFLOP/s", "best matmul ceiling",
                          "Conv2d ceiling"], [
        ["harmonise a 50-slice subject", "307", f"{subject_gflop:,.0f}", f"{subject_gflop / 307:.0f}",
         f"{best:.0f}", f"{conv_ceiling:.0f}"],
        ["training step, batch 8", "5.5", f"{step_gflop:,.0f}", f"{step_gflop / 5.5:.0f}", f"{best:.0f}",
         f"{conv_ceiling:.0f}"],
    ]))
    print()
    print(f"A 1 mm ICBM152 T1 (197x233x189, {n_volume} slices with brain) harmonised end to end with the "
          f"cpu-small preset (read, 10 iterations, write .nii.gz): {t_volume:.1f} s (goal < 120 s).")
    print()
    print(f"Achieved / Conv2d ceiling for the medgap pass: {2 * GFLOP_PER_SLICE_PASS * n / t_ours / conv_ceiling:.2f}.")
    print()
    # the reference-style port's harmonisation: one fwd+inv flow pass per iteration
    t_ref_harm = t_ref * opts.iterations
    print(f"bf16 (the flow's conditioners in bfloat16; invertible path, log-dets and losses float32), against the "
          f"reference-style port timed in this run. bf16 ceilings in this run: matmul {bf16_matmul:.0f}, "
          f"Conv2d {bf16_conv:.0f} GFLOP/s (fp32: {best:.0f}, {conv_ceiling:.0f}).")
    print()
    print(markdown_table(["task", "reference-style port s", "medgap fp32 s", "medgap bf16 s",
                          "port / medgap bf16", "bf16 GFLOP/s", "of bf16 Conv2d ceiling"], [
        [f"harmonise 50 slices, {opts.iterations} iterations", f"{t_ref_harm * scale:.1f}", f"{t_harm * scale:.1f}",
         f"{t_harm_bf16 * scale:.1f}", f"{t_ref_harm / t_harm_bf16:.2f}",
         f"{passes * GFLOP_PER_SLICE_PASS * n / t_harm_bf16:.0f}",
         f"{passes * GFLOP_PER_SLICE_PASS * n / t_harm_bf16 / bf16_conv:.2f}"],
        ["training step, batch 8", f"{t_ref_step:.1f}", f"{t_step:.1f}", f"{t_step_bf16:.1f}",
         f"{t_ref_step / t_step_bf16:.2f}", f"{step_gflop / t_step_bf16:.0f}",
         f"{step_gflop / t_step_bf16 / bf16_conv:.2f}"],
    ]))


if __name__ == "__main__":
    main()
