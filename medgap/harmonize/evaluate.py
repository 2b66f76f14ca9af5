"""Simulated-domain evaluation: harmonise held-out target slices pushed into other
"scanners" and measure how close each method brings them back.

Test slices: for a model trained on the real T1 cohort (the default), slices of the
held-out real subject (Colin 27); for one trained on the ICBM152 template alone, the
template slices kept out of training (``data.holdout_every``). Each is additionally
rotated/scaled/shifted by a random small affine so that it does not line up with the
templates. The WM reference is the ICBM152 label, or for Colin 27 the segmenter's own
result on the untouched slice (a consistency Dice). For every
simulated domain (the publication's gamma/exp/log set plus changes histogram
matching cannot undo) and every method, it reports PSNR and SSIM against the
untouched slice (whole image and inside the brain mask), and the Dice/IoU of a
white-matter segmentation network (MONAI UNet) trained on target slices only.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medgap.errors import InputError
from medgap.harmonize.api import METHODS, Harmonizer
from medgap.harmonize.simulate import DOMAINS, HARD_DOMAINS
from medgap.harmonize.augment import random_affine_grid
from medgap.harmonize.train import ICBM_NAME, TrainingSet, load_training_set
from medgap.io import atomic_write_text
from medgap.outputs import json_text, staged_output_folder
from medgap.metrics import dice, iou, psnr, ssim
from medgap.metrics.atropos import atropos_tissues, tissue_agreement
from medgap.report.figures import plt, save_figure
from medgap.training.runtime import track

__all__ = ["evaluate", "train_wm_segmenter", "perturb", "heldout_subject_slices", "heldout_sets", "compare_methods",
           "slice_flicker"]


def perturb(x: torch.Tensor, *others: torch.Tensor, seed: int = 1, degrees: float = 8.0, scale: float = 0.08,
            shift: float = 0.04) -> list[torch.Tensor]:
    """The same random small affine per slice applied to images (bilinear) and labels (nearest)."""
    g = torch.Generator().manual_seed(seed)
    grid = random_affine_grid(list(x.shape), degrees, scale, shift, g)
    out = [F.grid_sample(x.float(), grid, mode="bilinear", align_corners=False).clamp(0, 1)]
    for o in others:
        out.append(F.grid_sample(o.float(), grid, mode="nearest", align_corners=False) > 0.5)
    return out


def train_wm_segmenter(data: TrainingSet, steps: int = 300, seed: int = 0, progress: bool = False):
    """A small 2D MONAI UNet trained on target slices to segment white matter (Dice loss)."""
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    if data.wm is None:
        raise InputError(None, "white-matter labels are only available for the bundled ICBM152 target")
    torch.manual_seed(seed)
    net = UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(16, 32, 64, 128), strides=(2, 2, 2),
               num_res_units=1)
    loss_fn = DiceCELoss(sigmoid=True)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    n = len(data.slices)
    net.train()
    for step in track(range(steps), description="train WM segmenter", disable=not progress):
        idx = torch.randint(n, (16,), generator=g)
        x, y = perturb(data.slices[idx], data.wm[idx], seed=seed * 7919 + step, degrees=8, scale=0.08)
        loss = loss_fn(net(x), y.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def heldout_subject_slices(image_size: tuple[int, int], every: int = 2, seed: int | None = 1,
                           name: str = "colin27"):
    """Slices of a held-out real subject of the cohort (medgap.data.cohort, in the target look),
    every ``every``-th one, each randomly rotated/scaled/shifted (``seed=None``: consecutive,
    unperturbed slices of the volume): (truth, brain mask, position)."""
    from medgap.data.cohort import load_brain
    from medgap.harmonize.data import prepare_volume

    b = load_brain(name)
    st = prepare_volume(b.t1.data, b.t1.affine, tuple(image_size), mask=b.mask, min_foreground=0.05)
    sel = slice(None, None, every)
    truth, brain = torch.from_numpy(st.slices[sel]), torch.from_numpy(st.masks[sel])
    if seed is not None:
        truth, brain = perturb(truth, brain, seed=seed)
    return truth, brain, torch.from_numpy(st.position[sel])


def heldout_sets(image_size: tuple[int, int], every: int = 2, seed: int = 1) -> dict[str, tuple]:
    """The held-out real subjects the harmonisation benchmarks score on, each as (truth, brain,
    position, separate): "test_volume" S1 and "test" the six test slices (TEST), "validation" Colin 27;
    every ``every``-th slice, each slice randomly moved with ``seed``; ``separate``: slices of
    different subjects, harmonised one by one."""
    from medgap.harmonize.data import load_test_slices

    test, test_brain, test_pos, _ = load_test_slices(image_size)
    test, test_brain = perturb(test, test_brain, seed=seed)
    return {"test_volume": (*heldout_subject_slices(image_size, every=every, seed=seed, name="s1"), False),
            "test": (test, test_brain, test_pos, True),
            "validation": (*heldout_subject_slices(image_size, every=every, seed=seed), False)}


def compare_methods(h: Harmonizer, truth: torch.Tensor, brain: torch.Tensor, position: torch.Tensor,
                    domains: list[str], methods: dict[str, tuple[str, Harmonizer | None]], seed: int = 1,
                    separate: bool = False, segmenter=None, tissues: bool = False) -> dict:
    """PSNR/SSIM in the brain of each method on each simulated domain of ``truth``.

    ``segmenter``: also the Dice of its white matter against its white matter of the truth;
    ``tissues``: also ANTs Atropos' CSF/GM/WM of the result against its classes of the truth
    (:mod:`medgap.metrics.atropos`: mean Dice ``tissue_dice`` and volume error in % ``tissue_volume_error``).

    ``methods``: column name -> (method, harmonizer or None for ``h``), so one column can be
    another configuration of the same model (an ablation). ``separate``: each slice is its own
    image (different subjects), harmonised alone. Returns {domain: {column: metrics}} plus
    "seconds" per column."""
    from medgap.harmonize.simulate import simulate

    out: dict = {}
    seconds = {c: 0.0 for c in methods}
    wm_truth = _segment(segmenter, truth) if segmenter is not None else None
    brain_np = brain[:, 0].numpy()
    tissue_truth = atropos_tissues(truth[:, 0].numpy(), brain_np, slices=True) if tissues else None
    for d_i, domain in enumerate(domains):
        xs = simulate(truth, domain, seed=seed + d_i)
        per = {}
        for col, (method, other) in methods.items():
            t = time.perf_counter()
            model = other or h
            if separate:
                xh = torch.cat([model.harmonize_slices(xs[i:i + 1], position[i:i + 1], method) for i in range(len(xs))])
            else:
                xh = model.harmonize_slices(xs, position, method)
            seconds[col] += time.perf_counter() - t
            per[col] = {"psnr_brain": float(np.mean([psnr(a, b, mask=m) for a, b, m in
                                                     zip(xh[:, 0], truth[:, 0], brain[:, 0])])),
                        "ssim_brain": ssim(xh[:, 0], truth[:, 0], mask=brain[:, 0], stack=True)}
            if segmenter is not None:
                per[col]["wm_dice"] = dice(_segment(segmenter, xh), wm_truth)
            if tissues:
                agree = tissue_agreement(atropos_tissues(xh[:, 0].numpy(), brain_np, slices=True), tissue_truth)
                per[col].update({"tissue_dice": agree["dice"], "tissue_volume_error": agree["volume_error"],
                                 **{f"tissue_{k}": v for k, v in agree.items() if k[-3:] in ("CSF", "_GM", "_WM")}})
        out[domain] = per
    out["seconds"] = seconds
    return out


def slice_flicker(h: Harmonizer, truth: torch.Tensor, brain: torch.Tensor, position: torch.Tensor, domain: str,
                  methods: dict[str, tuple[str, Harmonizer | None]], seed: int = 1) -> dict[str, float]:
    """Slice-to-slice consistency of each method on consecutive slices of one volume: the mean
    absolute change, from one slice to the next, of the slice's mean error in the brain (x 1000;
    0 for an error that is constant along z). ``truth`` must be unperturbed consecutive slices."""
    from medgap.harmonize.simulate import simulate

    xs = simulate(truth, domain, seed=seed)
    m = brain[:, 0].float()
    out = {}
    for col, (method, other) in methods.items():
        xh = (other or h).harmonize_slices(xs, position, method)
        err = ((xh - truth)[:, 0] * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp_min(1)
        out[col] = float(err.diff().abs().mean()) * 1000
    return out


@torch.inference_mode()
def _segment(net, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(x[i:i + 32]) > 0 for i in range(0, len(x), 32)])


def evaluate(model_dir: str | Path, out_dir: str | Path, domains: list[str] | None = None,
             methods: list[str] | None = None, device: str = "auto", seg_steps: int = 300,
             max_slices: int | None = None, progress: bool = True, seed: int = 1,
             overrides: tuple[str, ...] = (), overwrite: bool = False) -> dict:
    """Run the simulated benchmark for a model trained on the bundled ICBM152 target.

    Writes ``metrics.json``, ``examples.png`` (before/after panels), ``histograms.png``
    and ``metrics_table.png`` into ``out_dir``; returns the metrics dict. ``overrides``
    change optimiser settings (``harmonize.alpha=0``) as in :meth:`Harmonizer.load`.
    """
    with staged_output_folder(out_dir, overwrite=overwrite, names=("metrics.json",)) as staging:
        h = Harmonizer.load(model_dir, device=device, overrides=overrides)
        trained = h.info.get("trained_on", {}).get("targets")
        cohort = bool(trained) and all(t.endswith("(real T1 cohort)") for t in trained)
        if trained not in (None, [ICBM_NAME]) and not cohort:
            raise InputError(model_dir, "evaluate needs a model trained on the bundled targets (the real T1 cohort or "
                                        "the ICBM152 template): their held-out slices are the ground truth")
        cfg = h.cfg
        note = ""
        if cohort:
            # test: the held-out real subject; WM reference: the segmenter's own result on the untouched slice
            data = load_training_set(cfg.replace(data={"cohort": "icbm152", "holdout_every": 4}))
            truth, brain, position = heldout_subject_slices(cfg.flow.image_size, every=2, seed=seed)
            if max_slices:
                idx = torch.linspace(0, len(truth) - 1, min(max_slices, len(truth))).round().long()
                truth, brain, position = truth[idx], brain[idx], position[idx]
            wm = None
        else:
            if cfg.data.holdout_every == 0:
                cfg = cfg.replace(data={"holdout_every": 4})
                note = "model trained on all slices: test slices were seen in training (only perturbed)"
            data = load_training_set(cfg.replace(data={"cohort": "icbm152"}))
            held = data.heldout
            idx = torch.arange(len(held["slices"]))
            if max_slices:
                idx = idx[torch.linspace(0, len(idx) - 1, min(max_slices, len(idx))).round().long()]
            truth, brain, wm = perturb(held["slices"][idx], held["masks"][idx], held["wm"][idx], seed=seed)
            position = held["position"][idx]
        domains = domains or DOMAINS
        methods = methods or [m for m in METHODS if m != "restore" or h.restorer is not None]
        t0 = time.perf_counter()
        seg = train_wm_segmenter(data, seg_steps, progress=progress)
        seg_seconds = time.perf_counter() - t0
        wm_truth_pred = _segment(seg, truth)
        if wm is None:
            wm = wm_truth_pred
        results: dict = {"domains": {}, "target": {"dice": dice(wm_truth_pred, wm), "iou": iou(wm_truth_pred, wm)}}
        examples = {}
        timing = {m: 0.0 for m in methods}
        from medgap.harmonize.simulate import simulate

        for d_i, domain in enumerate(track(domains, description="domains", disable=not progress)):
            xs = simulate(truth, domain, seed=seed + d_i)
            per = {}
            for method in methods:
                t = time.perf_counter()
                xh = h.harmonize_slices(xs, position, method)
                timing[method] += time.perf_counter() - t
                pred = _segment(seg, xh)
                per[method] = {
                    "psnr": float(np.mean([psnr(a, b) for a, b in zip(xh[:, 0], truth[:, 0])])),
                    "psnr_brain": float(np.mean([psnr(a, b, mask=m) for a, b, m in zip(xh[:, 0], truth[:, 0],
                                                                                      brain[:, 0])])),
                    "ssim": ssim(xh[:, 0], truth[:, 0], stack=True),
                    "ssim_brain": ssim(xh[:, 0], truth[:, 0], mask=brain[:, 0], stack=True),
                    "dice": dice(pred, wm), "iou": iou(pred, wm),
                }
                examples.setdefault(domain, {})[method] = xh[len(xh) // 2, 0].numpy()
            examples[domain]["source"] = xs[len(xs) // 2, 0].numpy()
            results["domains"][domain] = per

        def mean_of(names):
            return {m: {k: float(np.mean([results["domains"][d][m][k] for d in names]))
                        for k in results["domains"][names[0]][m]} for m in methods}

        results["mean"] = mean_of(domains)
        hard = [d for d in domains if d in HARD_DOMAINS]
        paper = [d for d in domains if d not in HARD_DOMAINS]
        if hard:
            results["mean_hard"] = mean_of(hard)
        if paper:
            results["mean_paper"] = mean_of(paper)
        results["setup"] = {"test_slices": len(truth),
                            "test_subject": "Colin 27 (held out of the cohort)" if cohort else "held-out ICBM152 slices", "image_size": list(cfg.flow.image_size),
                            "holdout_every": cfg.data.holdout_every, "perturbation": "rotate 8 deg, scale 8%, shift 4%",
                            "segmenter_steps": seg_steps, "segmenter_seconds": round(seg_seconds, 1),
                            "seconds_per_method": {k: round(v, 1) for k, v in timing.items()},
                            "options": h.describe()["options"], "note": note}
        atomic_write_text(staging / "metrics.json", json_text(results, indent=2))
        _figures(staging, results, examples, truth[len(truth) // 2, 0].numpy(), methods)
        return results


def _figures(out_dir: Path, results: dict, examples: dict, truth: np.ndarray, methods: list[str]) -> None:
    domains = list(examples)
    cols = ["source"] + methods[:-1] + ["truth"] if methods[-1] == "identity" else ["source"] + methods + ["truth"]
    cols = [c for c in cols if c != "identity"]
    fig, axes = plt.subplots(len(domains), len(cols), figsize=(1.9 * len(cols), 1.7 * len(domains)), squeeze=False)
    for r, d in enumerate(domains):
        for c, name in enumerate(cols):
            img = truth if name == "truth" else examples[d][name]
            ax = axes[r, c]
            ax.imshow(np.rot90(img), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
            if c == 0:
                ax.set_ylabel(d, fontsize=8)
    save_figure(fig, out_dir / "examples.png")

    fig, axes = plt.subplots(1, min(4, len(domains)), figsize=(3.2 * min(4, len(domains)), 2.6), squeeze=False)
    show = [d for d in domains if d in ("gamma0.7", "exp", "bias", "wm_dark")] or domains[:4]
    for ax, d in zip(axes[0], show[:4]):
        for name in ["source", "histogram", "blindharmony", "restore"]:
            if name in examples[d]:
                v = examples[d][name]
                ax.hist(v[v > 0.05], bins=60, histtype="step", density=True, label=name)
        ax.hist(truth[truth > 0.05], bins=60, histtype="step", density=True, label="truth", color="k")
        ax.set_title(d, fontsize=9)
        ax.set_xlabel("intensity")
    axes[0, 0].legend(fontsize=7)
    save_figure(fig, out_dir / "histograms.png")

    rows = list(results["domains"]) + ["mean"]
    table = []
    for d in rows:
        src = results["mean"] if d == "mean" else results["domains"][d]
        table.append([f"{src[m]['psnr']:.2f} / {src[m]['dice']:.3f}" for m in methods])
    fig, ax = plt.subplots(figsize=(2.0 + 1.8 * len(methods), 0.35 * len(rows) + 0.8))
    ax.axis("off")
    ax.table(cellText=table, rowLabels=rows, colLabels=[f"{m}\nPSNR / WM Dice" for m in methods], loc="center")
    ax.set_title(f"target WM Dice {results['target']['dice']:.3f}", fontsize=9)
    save_figure(fig, out_dir / "metrics_table.png")
