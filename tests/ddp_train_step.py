"""A small real training loop run either alone or under torchrun (used by test_distributed.py).

    python tests/ddp_train_step.py OUT.npz
    torchrun --standalone --nproc_per_node 2 tests/ddp_train_step.py OUT.npz
"""

import sys

import numpy as np
import torch

from medgap.io import atomic_save_npz
from medgap.training.distributed import setup_distributed
from medgap.training.runtime import seed_everything

GLOBAL_BATCH = 8


def main(out: str) -> None:
    ctx = setup_distributed("cpu")
    seed_everything(0)  # same initial weights and data on every rank
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    model = ctx.wrap(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(64, 6)
    y = torch.sin(x.sum(1, keepdim=True))
    for step in range(4):
        batch = torch.arange(step * GLOBAL_BATCH, (step + 1) * GLOBAL_BATCH)
        local = ctx.shard(batch)
        assert len(local) == GLOBAL_BATCH // ctx.world_size
        loss = ((model(x[local]) - y[local]) ** 2).mean()
        opt.zero_grad()
        loss.backward()  # DDP averages gradients over ranks: equal to the global-batch mean
        opt.step()
    if ctx.is_main:
        params = {f"p{i}": p.detach().numpy() for i, p in enumerate(model.parameters())}
        atomic_save_npz(out, world_size=np.array(ctx.world_size), **params)
    # free the DDP wrapper (its reducer holds gloo work) before the process group goes, as the
    # trainers do by returning from their loop first; else a rank can abort at exit
    del model, opt, loss
    ctx.close()


if __name__ == "__main__":
    main(sys.argv[1])
