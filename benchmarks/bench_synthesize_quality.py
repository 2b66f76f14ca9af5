"""HA-GAN vs. a full-resolution 3D GAN of comparable width, trained for the same wall-clock time.

    python benchmarks/bench_synthesize_quality.py [--quick] [--seconds S] [--size N] [--width W]
        [--precisions fp32,bf16]

Both models train at each precision in turn (bf16: bfloat16 mixed precision, more iterations in
the same time on a CPU with AVX512-BF16).
"""

from __future__ import annotations

import argparse

from bench_synthesize import quality_section


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=300.0, help="training time per model")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()
    secs = 45.0 if args.quick else args.seconds
    n = 12 if args.quick else 32
    print(f"Quality at equal wall-clock ({secs:.0f} s of training each, same seed, same pseudo-cohort).\n")
    table, verdicts = quality_section(secs, n, args.size, args.width, tuple(args.precisions.split(",")))
    print(table)
    verdict = "; ".join(f"{p}: {v}" for p, v in verdicts.items())
    print(f"\nVerdict (FID and MMD^2), per precision: {verdict}. Pseudo-cohort: {n} augmented copies of the ICBM152 T1 "
          f"(affine, elastic, intensity; drawn once), scored against {n} other copies; features of the "
          "foundation's fixed seeded MONAI ResNet-10 (not MedicalNet). One template brain: this compares "
          "how fast each model approaches a known distribution, not cohort-level realism.")


if __name__ == "__main__":
    main()
