"""GPU readiness in one command (<= 5 minutes on one GPU): every trainer and apply step on CUDA.

    python benchmarks/gpu_smoke.py                 # on a machine with a GPU; writes docs/benchmarks.md
    python benchmarks/gpu_smoke.py --device cpu    # the same steps on the CPU (checks the script itself)

Per step: seconds and peak CUDA memory. Trainers run ``--steps`` steps (default 20) in fp32 and,
where the method has it, bf16: harmonize (cpu-small flow on the bundled ICBM152), transfer (cpu-small
cINN on simulated HSI spectra), synthesize (cpu-small HA-GAN at 64^3). Then harmonize apply on a 2 mm
volume, transfer apply, HA-GAN sample and encode, and a 1-GPU ``torchrun`` of the synthesize trainer.
On a GPU the table is written into docs/benchmarks.md (section ``gpu_smoke``); on the CPU it is only
printed.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine_info, markdown_table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _measure(device: str, fn) -> tuple[float, float]:
    """(seconds, peak CUDA GB) of ``fn()``."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 1e9
    return time.perf_counter() - start, float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    device, steps = args.device, args.steps
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run with --device cpu to check the script on the CPU")

    from medgap.data.sample import load_icbm152
    from medgap.data.spectra import simulate_hsi
    from medgap.harmonize import Harmonizer
    from medgap.harmonize.config import HarmonizeConfig
    from medgap.harmonize.train import train as train_flow
    from medgap.io import write_nifti
    from medgap.synthesize import Synthesizer
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.synthesize.data import sample_dataset
    from medgap.synthesize.train import train as train_hagan
    from medgap.transfer.apply import apply_transfer
    from medgap.transfer.config import TransferConfig
    from medgap.transfer.trainer import train as train_transfer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        brain = load_icbm152(2.0)
        volume = write_nifti(tmp / "t1.nii.gz", brain.t1.data * brain.mask.data, like=brain.t1)
        sim, real = simulate_hsi(4000, seed=0), simulate_hsi(4000, realism="rich", seed=1)

        cfg = HarmonizeConfig.from_preset("cpu-small", overrides=[f"train.steps={steps}"])
        rows.append(["harmonize train", "fp32", steps,
                     *_measure(device, lambda: train_flow(cfg, None, tmp / "flow", device=device, progress=False))])
        h = Harmonizer.load(tmp / "flow", device=device)
        rows.append(["harmonize apply (2 mm volume)", "fp32", "-",
                     *_measure(device, lambda: h.apply_file(volume, tmp / "h.nii.gz"))])

        for precision in ("fp32", "bf16"):
            tcfg = TransferConfig.from_preset("cpu-small", overrides=[
                "train.epochs=1", f"train.iterations_per_epoch={steps}", f"train.precision={precision}"])
            out = tmp / f"cinn-{precision}"
            rows.append(["transfer train (HSI cINN)", precision, steps, *_measure(
                device, lambda: train_transfer(tcfg, (sim, real), out, device=device, progress=False))])
            rows.append(["transfer apply (4,000 spectra)", precision, "-",
                         *_measure(device, lambda: apply_transfer(out, sim, device=device))])

            scfg = SynthesizeConfig.from_preset("cpu-small", overrides=[f"train.steps={steps}", "model.size=64",
                                                                        f"train.precision={precision}"])
            data = sample_dataset(scfg)
            model = tmp / f"hagan-{precision}"
            rows.append(["synthesize train (HA-GAN 64^3)", precision, steps, *_measure(
                device, lambda: train_hagan(scfg, data, model, device=device, progress=False))])
            syn = Synthesizer.load(model, device=device)
            rows.append(["synthesize sample (2 volumes)", precision, "-", *_measure(device, lambda: syn.sample(2))])
            rows.append(["synthesize encode", precision, "-",
                         *_measure(device, lambda: syn.encode(volume, reconstruct=True))])

        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "medgap",
               "synthesize", "train", "icbm152", "--out", str(tmp / "ddp"), "--size", "64", "--iterations", "5",
               "--device", device]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"torchrun failed:\n{done.stderr[-3000:]}")
        rows.append(["torchrun, 1 process: synthesize train", "fp32", 5, time.perf_counter() - start, float("nan")])

    info = machine_info()
    table = markdown_table(["step", "precision", "steps", "seconds", "peak CUDA GB"],
                           [[r[0], r[1], r[2], f"{r[3]:.2f}", "-" if np.isnan(r[4]) else f"{r[4]:.2f}"] for r in rows])
    stamp = (f"_Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {info['gpu']} "
             f"(device {device}), torch {info['torch']}. Command: `python benchmarks/gpu_smoke.py`._")
    print(stamp + "\n\n" + table)
    if device.startswith("cuda"):
        from run import write_section

        write_section("gpu_smoke", f"<!-- bench:gpu_smoke -->\n{stamp}\n\n{table}\n<!-- /bench:gpu_smoke -->")


if __name__ == "__main__":
    main()
