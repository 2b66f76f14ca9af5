"""HA-GAN bounded-memory generation: peak RSS under --max-memory budgets (256^3, 512^3), and equality;
and training memory at 256^3: HA-GAN vs. the full-resolution baseline.

Each configuration runs in a fresh subprocess (peak RSS, VmHWM, covers one
generation, paper width, random weights). Equality: max abs difference between
slab-wise and whole-volume generation of the same z at 256^3.

    python benchmarks/bench_synthesize_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def _equality(size: int, budget_gb: float) -> dict:
    import torch

    from medgap.synthesize.model import Architecture, Generator
    from medgap.synthesize.slabwise import generate_slabwise, plan_chunk

    torch.manual_seed(0)
    g = Generator(Architecture(size=size)).eval()
    z = torch.randn(1, 1024)
    with torch.no_grad():
        whole = g.generate(z)
    slab = generate_slabwise(g, z, max_memory_bytes=budget_gb * 2**30)
    chunk, keep = plan_chunk(g, budget_gb * 2**30)
    return {"max_abs_diff": float((whole - slab).abs().max()), "chunk": chunk, "keep_first": keep}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--equality", default=None)
    args = parser.parse_args()
    if args.equality:
        size, budget = args.equality.split(",")
        print(json.dumps(_equality(int(size), float(budget))))
        return
    from bench_synthesize import measure
    from machine import conv3d_gflops, machine_info, markdown_table

    info = machine_info()
    print(f"Machine: {info['cpu']}, {info['cores']} cores, shared with other engineers' runs (timings swing with "
          f"load); Conv3d ceiling at the start: {conv3d_gflops():.0f} GFLOP/s. Paper width (G 52.5 M parameters), "
          "one volume, random weights.\n")
    runs = [(256, None), (256, 1.9), (256, 1.2), (256, 1.0)]
    if not args.quick:
        runs += [(512, 8.0), (512, 4.0)]
    rows = []
    for size, budget in runs:
        spec = {"kind": "generate_whole", "size": size} if budget is None else \
            {"kind": "generate_slab", "size": size, "max_memory_gb": budget}
        r = measure(spec, timeout=3000)
        target = "-" if budget is None else f"{budget * 1024:.0f}"
        rows.append([f"{size}^3", "whole volume" if budget is None else f"slab-wise, --max-memory {budget}",
                     target, r.get("peak_mb", r.get("error")), r.get("seconds", "-")])
    print(markdown_table(["size", "mode", "budget MB", "peak RSS MB", "seconds"], rows))
    train_rows = []
    for kind, name in (("train", "HA-GAN"), ("train_fullres", "full-resolution 3D GAN")):
        r = measure({"kind": kind, "size": 256}, timeout=3000)
        train_rows.append([name, r.get("peak_mb", r.get("error")), r.get("seconds", "-")])
    print("\nTraining iteration at 256^3, batch 2, paper width:\n")
    print(markdown_table(["model", "peak RSS MB", "seconds"], train_rows))
    done = subprocess.run([sys.executable, __file__, "--equality", "256,1.0"], capture_output=True, text=True)
    eq = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {"error": done.stderr[-200:]}
    print(f"\nSlab-wise (--max-memory 1.0: {eq.get('chunk')} feature slices per chunk, first layer "
          f"{'kept' if eq.get('keep_first') else 'recomputed'}) vs. whole-volume 256^3 generation of the same z: "
          f"max abs difference {eq.get('max_abs_diff', eq.get('error'))}.")


if __name__ == "__main__":
    main()
