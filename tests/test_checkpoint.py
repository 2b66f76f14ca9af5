import random

import numpy as np
import torch

from medgap.training.checkpoint import CheckpointManager


def setup():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1)
    return net, opt, sched


def train(net, opt, sched, steps):
    for _ in range(steps):
        x = torch.randn(8, 3)
        noise = float(np.random.rand()) + random.random()
        loss = ((net(x) - x.sum(1, keepdim=True) - noise) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss.item())


def test_interrupted_run_resumes_identically(tmp_path):
    net, opt, sched = setup()
    train(net, opt, sched, 5)
    manager = CheckpointManager(tmp_path, keep_last=2)
    manager.save(5, {"net": net}, {"opt": opt}, {"sched": sched}, extra={"epoch": 1})
    train(net, opt, sched, 5)
    reference = [p.detach().clone() for p in net.parameters()]

    net2, opt2, sched2 = setup()
    step, extra = CheckpointManager(tmp_path).restore({"net": net2}, {"opt": opt2}, {"sched": sched2})
    assert (step, extra) == (5, {"epoch": 1})
    train(net2, opt2, sched2, 5)
    for a, b in zip(reference, net2.parameters()):
        assert torch.equal(a, b)


def test_keeps_last_n_and_best(tmp_path):
    net, opt, _ = setup()
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step, metric in [(1, 3.0), (2, 1.0), (3, 2.0), (4, 5.0)]:
        manager.save(step, {"net": net}, {"opt": opt}, metric=metric)
    assert [p.name for p in manager.checkpoints()] == ["step-00000003", "step-00000004"]
    assert manager.best_metric() == 1.0
    assert manager.latest().name == "step-00000004"
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers
