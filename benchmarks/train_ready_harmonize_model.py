"""Train the ready harmonisation model shipped with medgap: the bundled real T1 cohort's look.

    python benchmarks/train_ready_harmonize_model.py [--out medgap/data/models/harmonize-cohort-t1]

The cpu-small default (target flow 300 steps + restoration net 3,000 steps, seed 0) on the four
real T1 brains of ``medgap.data.cohort`` (Colin 27 and S1 held out), as
``medgap harmonize train --preset cpu-small --steps 300`` trains it without arguments; about 3.5
minutes on 2 CPU cores. The folder's manifest.json holds the sha256 of every file; ``medgap
harmonize apply cohort-t1 SCAN --out OUT`` uses it. Another machine's CPU may round differently, so a
retrained folder matches the shipped one in quality, not necessarily bit for bit.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    from medgap.harmonize.config import HarmonizeConfig
    from medgap.harmonize.train import train

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "medgap" / "data" / "models" / "harmonize-cohort-t1")
    args = parser.parse_args()
    torch.set_num_threads(2)
    cfg = HarmonizeConfig.from_preset("cpu-small", overrides=["train.steps=300", "train.seed=0",
                                                              "train.checkpoint_every=100000"])
    result = train(cfg, None, args.out, device="cpu", overwrite=True, progress=False, resume=False)
    shutil.rmtree(result.run, ignore_errors=True)  # the run folder (checkpoints, metrics) is not shipped
    print(f"wrote {args.out}: target flow {result.seconds:.0f} s + restoration net "
          f"{result.metrics['restore']['seconds']:.0f} s")


if __name__ == "__main__":
    main()
