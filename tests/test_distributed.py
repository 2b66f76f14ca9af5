import sys
from pathlib import Path

import numpy as np
from process_helpers import run_ok

SCRIPT = Path(__file__).with_name("ddp_train_step.py")


def run(cmd, tmp_path):
    run_ok(cmd, tmp_path, timeout=300)


def test_two_process_torchrun_equals_one_process(tmp_path):
    run([sys.executable, str(SCRIPT), str(tmp_path / "single.npz")], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(SCRIPT), str(tmp_path / "ddp.npz")], tmp_path)
    single, ddp = np.load(tmp_path / "single.npz"), np.load(tmp_path / "ddp.npz")
    assert int(single["world_size"]) == 1 and int(ddp["world_size"]) == 2
    for key in single.files:
        if key.startswith("p"):
            np.testing.assert_allclose(ddp[key], single[key], rtol=1e-5, atol=1e-6)
