"""The machine's fp32 ceilings, and the cost of the shared I/O (NIfTI, model folders)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from machine import conv3d_gflops, machine_info, markdown_table, matmul_gflops

from medgap.data.sample import load_icbm152
from medgap.io import read_nifti, write_nifti
from medgap.modelio import load_model, save_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.parse_args()
    info = machine_info()
    print(markdown_table(["machine", ""], [[k, v] for k, v in info.items()]))
    print()
    print(markdown_table(["fp32 ceiling (measured now)", "GFLOP/s"], [
        ["matmul 2048 x 2048 x 2048", matmul_gflops()],
        ["Conv3d 64->64, 3x3x3, 32^3, forward", conv3d_gflops()],
    ]))
    print()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        brain = load_icbm152(1.0)
        rows.append(["load ICBM152 T1+GM+WM+mask (1 mm, from nilearn)", time.perf_counter() - t0])
        for name in ("t1.nii", "t1.nii.gz"):
            t0 = time.perf_counter()
            write_nifti(tmp / name, brain.t1.data, like=brain.t1)
            rows.append([f"write 197x233x189 float32 `{name}`", time.perf_counter() - t0])
            t0 = time.perf_counter()
            read_nifti(tmp / name)
            rows.append([f"read + validate `{name}`", time.perf_counter() - t0])
        model = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(16)])  # 16.8 M parameters
        t0 = time.perf_counter()
        save_model(tmp / "model", method="bench", config={}, weights={"net": model})
        rows.append(["save 16.8 M-parameter model folder (sha256 manifest)", time.perf_counter() - t0])
        t0 = time.perf_counter()
        load_model(tmp / "model", method="bench")
        rows.append(["load + verify it", time.perf_counter() - t0])
    print(markdown_table(["shared I/O operation", "seconds"], rows))


if __name__ == "__main__":
    main()
