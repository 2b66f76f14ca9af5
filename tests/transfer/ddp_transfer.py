"""Train a tiny transfer model alone or under torchrun (used by test_train.py).

    python tests/transfer/ddp_transfer.py OUT_DIR
    torchrun --standalone --nproc_per_node 2 tests/transfer/ddp_transfer.py OUT_DIR
"""

import sys

import numpy as np

from medgap.data.spectra import simulate_hsi
from medgap.transfer.config import TransferConfig
from medgap.transfer.trainer import train

if __name__ == "__main__":
    wl = np.arange(500.0, 1000.0, 12.5)
    sim, real = simulate_hsi(400, wavelengths=wl, seed=0), simulate_hsi(400, wavelengths=wl, realism="rich", seed=1)
    # every random draw off (noise, dropout, random labels): 2 x B/2 must equal 1 x B exactly; chunks of
    # 16 make each rank accumulate two chunks before DDP averages the gradients
    cfg = TransferConfig.from_preset("cpu-small", overrides=[
        "condition=domain", "train.domain_noise=0", "hsi.noise_std=0", "hsi.disc_dropout=0", "train.epochs=2",
        "hsi.n_blocks=4", "hsi.n_conditional=4", "hsi.hidden=32", "hsi.batch_size=64", "hsi.chunk=16",
        "train.iterations_per_epoch=3"])
    train(cfg, (sim, real), sys.argv[1], device="cpu", resume=False, progress=False)
