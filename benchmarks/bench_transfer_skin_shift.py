"""Label shift between real labs: bench_transfer_skin with targets that hold three of the six sites.

    python benchmarks/bench_transfer_skin_shift.py [--quick]

The same protocol and development labs as bench_transfer_skin (its own section in docs/benchmarks.md);
the user's closed-form baselines and the cINN with and without class alignment, and with the classifier
trained without the weights the transferred file carries; 3 seeds, accuracy only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_transfer_skin  # noqa: E402

if __name__ == "__main__":
    sys.argv += ["--label-shift", "--no-realism", "--methods",
                 "standardise;CORAL;cINN (default);ablation: cINN, global alignment;"
                 "ablation: cINN, the file's weights ignored"]
    bench_transfer_skin.main()
