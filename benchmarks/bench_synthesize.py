"""HA-GAN on this CPU: memory vs. resolution and speed vs. the reference layout
(quality vs. a full-res GAN: bench_synthesize_quality.py).

Every measurement of time/memory runs in a fresh subprocess (peak RSS, VmHWM,
covers exactly one configuration). The in-run baseline for speed is the same model with
the literal ``upsample + conv`` layers of the reference implementation
(``UpConv3d.folded = False``); GFLOP/s are FLOPs counted by torch's FlopCounterMode
divided by the time, against the Conv3d ceiling measured in this run.

    python benchmarks/bench_synthesize.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

# Reference implementation measured on this kind of CPU (2 cores), from the issue.
REFERENCE = {
    ("train", 128): (8.8, 2.2), ("train", 256): (40.6, 4.9),
    ("generate", 128): (1.06, 1.2), ("generate", 256): (8.9, 5.7),
}
PAPER_GPU_MB = {32: 2573, 64: 2665, 128: 3167, 256: 5961}


# ----------------------------------------------------------------------------- worker side
def _worker(spec: dict) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from machine import peak_rss_mb
    from medgap.synthesize.model import HAGAN, Architecture, UpConv3d

    UpConv3d.folded = spec.get("folded", True)
    torch.manual_seed(0)
    size, batch = spec["size"], spec.get("batch", 2)
    arch = Architecture(size=size, width=spec.get("width", 1.0), latent_dim=spec.get("latent", 1024))
    result: dict = {}
    if spec["kind"] in ("train", "train_fullres"):
        from medgap.synthesize.config import SynthesizeConfig

        # the publication's iteration (what the reference timings are of): no small-data pieces
        cfg = SynthesizeConfig(model={"size": size, "width": arch.width, "latent_dim": arch.latent_dim,
                                      "minibatch_std": False},
                               train={"precision": spec.get("precision", "fp32"),
                                      "recon_weight": spec.get("recon_weight", 0.0), "diff_augment": False,
                                      "ema_decay": 0.0, "r1_gamma": 0.0})
        x = torch.rand(batch, 1, size, size, size) * 2 - 1
        if spec["kind"] == "train":
            from medgap.synthesize.train import HAGANStep

            step = HAGANStep(HAGAN(arch), cfg)
            run = lambda: step(x, torch.randn(batch, arch.latent_dim), 4 * (arch.positions // 2))  # noqa: E731
        else:
            from medgap.synthesize.baseline import FullResGAN, FullResStep

            step = FullResStep(FullResGAN(arch), cfg)
            run = lambda: step(x, torch.randn(batch, arch.latent_dim))  # noqa: E731
        per_step: dict[str, dict] = {}
        if spec.get("breakdown") and spec["kind"] == "train":
            step.phase = lambda name: _phase_probe(per_step.setdefault(name, {}))
        with FlopCounterMode(display=False) as counter:
            run()  # warm-up, and the FLOP count of one iteration
        result["gflop"] = counter.get_total_flops() / 1e9
        times = []
        for _ in range(spec.get("repeats", 1)):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        result["seconds"] = min(times)
        if per_step:
            result["steps"] = per_step
    else:  # generation of one volume
        from medgap.synthesize.model import Generator
        from medgap.synthesize.slabwise import generate_slabwise

        g = Generator(arch).eval()
        z = torch.randn(1, arch.latent_dim)
        budget = spec.get("max_memory_gb")
        gflop = None
        with torch.no_grad():
            if spec["kind"] == "generate_whole":
                with FlopCounterMode(display=False) as counter:
                    g.generate(z)
                gflop = counter.get_total_flops() / 1e9
                t0 = time.perf_counter()
                g.generate(z)
            else:
                generate_slabwise(g, z[:, :], chunk=1, keep_first=False) if size <= 64 else None  # warm-up
                t0 = time.perf_counter()
                generate_slabwise(g, z, max_memory_bytes=None if budget is None else budget * 2**30)
        result["seconds"] = time.perf_counter() - t0
        result["gflop"] = gflop
    result["peak_mb"] = peak_rss_mb()
    return result


class _phase_probe:
    """Context manager for ``HAGANStep.phase``: GFLOP of the first entry (under the outer
    FlopCounterMode, so counted separately here), seconds of the last."""

    def __init__(self, record: dict):
        self.record = record

    def __enter__(self):
        from torch.utils.flop_counter import FlopCounterMode

        self.counter = FlopCounterMode(display=False) if "gflop" not in self.record else None
        if self.counter is not None:
            self.counter.__enter__()
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.record["seconds"] = time.perf_counter() - self.t0
        if self.counter is not None:
            self.counter.__exit__(*exc)
            self.record["gflop"] = self.counter.get_total_flops() / 1e9
        return False


def measure(spec: dict, timeout: int = 1800) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main side
def memory_section(sizes, ceiling) -> tuple[str, dict]:
    from machine import markdown_table

    rows, raw = [], {}
    for s in sizes:
        tr = measure({"kind": "train", "size": s, "breakdown": s >= 128})
        gw = measure({"kind": "generate_whole", "size": s})
        gs = measure({"kind": "generate_slab", "size": s, "max_memory_gb": 1.9})
        fr = measure({"kind": "train_fullres", "size": s}) if s <= 128 else {"error": "see bench_synthesize_memory"}
        raw[s] = {"train": tr, "whole": gw, "slab": gs, "fullres": fr}
        rows.append([f"{s}^3", tr.get("peak_mb"), fr.get("peak_mb", fr.get("error")), gw.get("peak_mb"),
                     gs.get("peak_mb"), PAPER_GPU_MB.get(s, "-")])
    table = markdown_table(
        ["resolution", "HA-GAN train iter, peak RSS MB", "full-res GAN train iter, peak RSS MB",
         "HA-GAN generate (whole volume), MB", "HA-GAN generate (slab-wise, --max-memory 1.9), MB",
         "paper (GPU, training) MB"], rows)
    return table, raw


def speed_section(raw, sizes, ceiling, ceiling_bf16) -> str:
    from machine import markdown_table

    rows = []
    for s in [s for s in (128, 256) if s in sizes]:
        new = raw[s]["train"]
        old = measure({"kind": "train", "size": s, "folded": False})
        ref_t, ref_m = REFERENCE[("train", s)]
        rows.append([f"train iteration {s}^3, batch 2", ref_t, ref_m * 1024, _t(old), _t(new),
                     _ratio(old, new), _ratio_ref(ref_t, new), _gf(new, ceiling), new.get("peak_mb")])
        bf = measure({"kind": "train", "size": s, "precision": "bf16"})
        rows.append([f"train iteration {s}^3, batch 2, --precision bf16", ref_t, ref_m * 1024, _t(old), _t(bf),
                     _ratio(old, bf), _ratio_ref(ref_t, bf), _gf(bf, ceiling_bf16), bf.get("peak_mb")])
        gw, gs = raw[s]["whole"], raw[s]["slab"]
        ref_t, ref_m = REFERENCE[("generate", s)]
        oldg = measure({"kind": "generate_whole", "size": s, "folded": False})
        rows.append([f"generate {s}^3 (whole volume)", ref_t, ref_m * 1024, _t(oldg), _t(gw), _ratio(oldg, gw),
                     _ratio_ref(ref_t, gw), _gf(gw, ceiling), gw.get("peak_mb")])
        rows.append([f"generate {s}^3 (slab-wise, 1.9 GB budget)", ref_t, ref_m * 1024, _t(oldg), _t(gs),
                     _ratio(oldg, gs), _ratio_ref(ref_t, gs), "-", gs.get("peak_mb")])
    return markdown_table(
        ["operation", "reference s (issue)", "reference peak MB (issue)", "literal upsample+conv s (this run)",
         "medgap s", "speed-up vs. literal (this run)", "speed-up vs. reference (issue)",
         "achieved GFLOP/s (% of Conv3d ceiling; bf16 row: bf16 ceiling)", "medgap peak RSS MB"], rows)


def breakdown_section(raw, ceiling) -> str:
    """Per-step GFLOP, seconds and GFLOP/s of one training iteration, with the time at the ceiling."""
    from machine import markdown_table

    rows = []
    names = {"d": "D step", "g": "G step", "eh": "E^H step", "eg": "E^G step"}
    for s in sorted(raw):
        steps = raw[s]["train"].get("steps")
        if not steps:
            continue
        for key, name in names.items():
            st = steps[key]
            rows.append([f"{s}^3", name, st["gflop"], st["seconds"], st["gflop"] / st["seconds"],
                         st["gflop"] / ceiling])
        tr = raw[s]["train"]
        rows.append([f"{s}^3", "whole iteration", tr["gflop"], tr["seconds"], tr["gflop"] / tr["seconds"],
                     tr["gflop"] / ceiling])
    return markdown_table(["size", "step", "GFLOP", "s", "GFLOP/s", "s at the Conv3d ceiling (GFLOP / ceiling)"],
                          rows)


def _t(r):
    return r.get("seconds", r.get("error"))


def _ratio(old, new):
    return (old["seconds"] / new["seconds"]) if "seconds" in old and "seconds" in new else "-"


def _ratio_ref(ref_t, new):
    return (ref_t / new["seconds"]) if "seconds" in new else "-"


def _gf(r, ceiling):
    if not r.get("gflop") or "seconds" not in r:
        return "-"
    g = r["gflop"] / r["seconds"]
    return f"{g:.0f} ({100 * g / ceiling:.0f} %)"


def memory_plot(raw, path: Path) -> None:
    from medgap.report.figures import plt, save_figure

    sizes = sorted(raw)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for key, label in [("train", "HA-GAN training iteration"), ("fullres", "full-res GAN training iteration"),
                       ("whole", "HA-GAN generation, whole volume"), ("slab", "HA-GAN generation, slab-wise 1.9 GB")]:
        pts = [(s, raw[s][key]["peak_mb"] / 1024) for s in sizes if "peak_mb" in raw[s][key]]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [f"{s}^3" for s in sizes])
    ax.set_xlabel("output resolution")
    ax.set_ylabel("peak RSS (GB), batch 2 / 1 volume")
    ax.set_title("Memory vs. resolution (paper widths, this CPU)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def quality_section(seconds: float, n: int, size: int, width: float,
                    precisions: tuple[str, ...] = ("fp32",)) -> tuple[str, dict[str, str]]:
    """HA-GAN vs. the full-res GAN, each trained ``seconds`` from seed 0 on the same pseudo-cohort,
    once per training precision.

    The pseudo-cohort is ``n`` augmented copies of the ICBM152 T1 (drawn once, seed 99), so
    neither model pays for on-the-fly augmentation; the held-out 'real' set is ``n`` other
    copies (seed 7). Each model contributes ``n`` samples (seed 1). Same feature extractor,
    same ``n`` for every row, so the FID/MMD^2 bias from small ``n`` is the same for all rows.
    Returns the table and the verdict per precision.
    """
    import tempfile

    import numpy as np

    from machine import markdown_table

    from medgap.metrics.features import VolumeFeatureExtractor
    from medgap.synthesize.api import Synthesizer
    from medgap.synthesize.baseline import train_baseline
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.synthesize.data import TrainingSet, augmented_copies, sample_dataset
    from medgap.synthesize.evaluate import distribution_scores, ms_ssim_diversity
    from medgap.synthesize.train import train

    base_cfg = SynthesizeConfig.from_preset("cpu-small", overrides=[
        f"model.size={size}", f"model.width={width}", "train.steps=1000000", "train.checkpoint_every=1000000", "data.augment=false",
        # the publication's recipe (as when these numbers were first recorded); the cpu-small recipe's
        # gains are measured by bench_synthesize_anatomy
        "train.lr_g=1e-4", "train.recon_weight=0", "model.latent_prior=normal", "train.betas=[0, 0.999]", "data.augment_pool=0", "train.diff_augment=false",
        "model.minibatch_std=false", "train.ema_decay=0", "train.r1_gamma=0"])
    template = sample_dataset(base_cfg)
    t1 = np.asarray(template.volumes[0], np.float32)
    data = TrainingSet(augmented_copies(t1, n, seed=99), np.zeros(n, np.int64), ["t1"], template.spacing_mm,
                       ["ICBM152 T1, augmented"])
    held_out = augmented_copies(t1, n, seed=7)
    ex = VolumeFeatureExtractor()
    rows, verdicts = [], {}

    def row(name, steps, secs, fake):
        sc = distribution_scores(held_out, fake, ex)
        rows.append([name, steps, secs, steps / secs, sc["fid"], sc["mmd2"], ms_ssim_diversity(fake)])
        return rows[-1]

    for precision in precisions:
        cfg = base_cfg.replace(train={"precision": precision})
        with tempfile.TemporaryDirectory() as tmp:
            res = train(cfg, data, Path(tmp) / "m", device="cpu", max_seconds=seconds, resume=False,
                        progress=False)
            hagan = row(f"HA-GAN, {precision}", res.steps, res.seconds,
                        Synthesizer.load(Path(tmp) / "m", device="cpu").sample(n, seed=1))
        base, steps, secs = train_baseline(data, cfg, seed=0, max_seconds=seconds)
        full = row(f"full-res 3D GAN, {precision}", steps, secs, base.sample(n, seed=1))
        verdicts[precision] = ("HA-GAN better on both" if hagan[4] < full[4] and hagan[5] < full[5] else
                               "full-res GAN better on both" if hagan[4] > full[4] and hagan[5] > full[5]
                               else "split")
    sc = distribution_scores(held_out, np.asarray(data.volumes), ex)
    rows.append(["(training copies vs. held-out copies)", "-", "-", "-", sc["fid"], sc["mmd2"],
                 ms_ssim_diversity(held_out)])
    head = f"model ({size}^3, width {width}, z {base_cfg.model.latent_dim}, batch {base_cfg.train.batch_size}), precision"
    table = markdown_table([head, "iterations", "train s", "iterations/s", f"FID (n={n})", f"MMD^2 (n={n})",
                            "MS-SSIM (lower = more diverse)"], rows)
    return table, verdicts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", default=None)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    from machine import conv3d_gflops, machine_info

    info = machine_info()
    import torch

    ceiling, ceiling_bf16 = conv3d_gflops(), conv3d_gflops(dtype=torch.bfloat16)
    print(f"Machine: {info['cpu']}, {info['cores']} cores; shared with other engineers' runs, so timings swing "
          f"with load. Conv3d ceiling measured at the start of this run: fp32 {ceiling:.0f} GFLOP/s, "
          f"bf16 {ceiling_bf16:.0f} GFLOP/s.\n")
    sizes = [32, 64, 128] if args.quick else [32, 64, 128, 256]
    print("### Peak memory (paper widths: G 52.5 M, D 7.4 M, E 19.9 M parameters at 256^3; batch 2)\n")
    table, raw = memory_section(sizes, ceiling)
    print(table)
    plot = ROOT / "docs" / "synthesize_memory.png"
    memory_plot(raw, plot)
    print(f"\nPlot: `docs/{plot.name}`.\n")
    print("### Speed vs. the reference (issue numbers) and vs. the literal layer layout measured in this run\n")
    print(speed_section(raw, sizes, ceiling, ceiling_bf16))
    print("\n### Training iteration per step (batch 2, paper width; FLOPs counted by FlopCounterMode)\n")
    print(breakdown_section(raw, ceiling))
    print(f"\nConv3d ceiling re-measured at the end: fp32 {conv3d_gflops():.0f} GFLOP/s, "
          f"bf16 {conv3d_gflops(dtype=torch.bfloat16):.0f} GFLOP/s.\n")


if __name__ == "__main__":
    main()
