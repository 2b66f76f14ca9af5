"""Run a medgap command (alone or under torchrun) in a subprocess and require success."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# gloo's teardown race (see medgap.training.distributed.DistContext.close): a rank can still abort at
# exit, rarely (0 of 12 idle runs here, once in a fresh-clone suite); one retry for exactly that
# signature, any other failure counts
GLOO_EXIT_ABORT = "terminate called without an active exception"


def run_ok(cmd, cwd, timeout: int = 600, **env) -> subprocess.CompletedProcess:
    """``cmd`` with one thread per process and medgap importable; fails the test unless it exits 0."""
    environ = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), MEDGAP_NO_PROGRESS="1", **env)
    for _ in range(2):
        done = subprocess.run(cmd, env=environ, capture_output=True, text=True, timeout=timeout, cwd=cwd)
        if done.returncode == 0 or GLOO_EXIT_ABORT not in done.stderr:
            break
    assert done.returncode == 0, done.stderr[-3000:]
    return done
