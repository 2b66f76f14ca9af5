"""Load a transfer model folder and transfer data with it (deterministic, labels carried over)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medgap.errors import InputError, ModelFolderError
from medgap.io import ImageSet, SpectraSet
from medgap.modelio import load_model
from medgap.training.runtime import resolve_device

from .cinn import REAL, SIM
from .config import TransferConfig
from .data import DomainStats, check_spectra
from .labels import sample_weights
from .model import CLOSED_FORM, TransferModel, build_model
from .trainer import METHOD

__all__ = ["LoadedTransfer", "load_transfer", "apply_transfer"]

DIRECTIONS = {"sim2real": SIM, "real2sim": REAL}


@dataclass
class LoadedTransfer:
    model: TransferModel
    config: TransferConfig
    stats: dict[int, DomainStats]  # by domain (SIM, REAL)
    extras: dict
    path: Path


def load_transfer(folder: str | Path, device: str = "auto") -> LoadedTransfer:
    """Rebuild the model of a folder written by ``train`` (wrong method or altered files -> ModelFolderError)."""
    saved = load_model(folder, method=METHOD)
    cfg = TransferConfig.load_json(saved.config)
    ex = saved.info.get("extras", {})
    try:
        model = build_model(cfg, ex["n_channels"], ex["n_classes"], ex["image_shape"])
        if cfg.method not in CLOSED_FORM:
            model.generator.load_state_dict(saved.weights["generator"])
            model.dis.load_state_dict(saved.weights["discriminators"])
        stats = {SIM: DomainStats.from_tensors(saved.weights["stats"], "sim"),
                 REAL: DomainStats.from_tensors(saved.weights["stats"], "real")}
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise ModelFolderError(folder, f"weights do not fit the saved configuration ({type(exc).__name__}: {exc})") from exc
    dev = resolve_device(device)
    model.to(dev).eval()
    return LoadedTransfer(model, cfg, stats, ex, Path(folder))


def apply_transfer(model: LoadedTransfer | str | Path, data: SpectraSet | ImageSet, direction: str = "sim2real", *,
                   batch_size: int = 8192, device: str = "auto") -> SpectraSet | ImageSet:
    """Transfer ``data`` (raw units of the source domain) into the other domain.

    Returns the same kind of set, in the target domain's raw units (spectra of an ``hsi.brightness=l2``
    model: L2 norm equal to the target domain's mean norm), with labels, label names and groups
    carried over. Labelled spectra transferred sim2real by a class-aligned model also get ``weights``:
    the target's estimated share of each spectrum's class over the input's own
    (:func:`~medgap.transfer.labels.sample_weights`), so that a classifier trained with them follows
    the target lab's class mix (a class the target lacks weighs 0). Deterministic.
    """
    if not isinstance(model, LoadedTransfer):
        model = load_transfer(model, device)
    if direction not in DIRECTIONS:
        raise InputError(None, f"direction must be one of {sorted(DIRECTIONS)}, got {direction!r}")
    source = DIRECTIONS[direction]
    ex, path = model.extras, data.path
    wl = np.asarray(ex["wavelengths_nm"])
    if data.wavelengths.shape != wl.shape or not np.allclose(data.wavelengths, wl, atol=1e-6):
        raise InputError(path, f"wavelength grid ({len(data.wavelengths)} channels) differs from the model's "
                               f"({len(wl)} channels, {wl[0]:g}-{wl[-1]:g} nm)")
    is_images = ex["image_shape"] is not None
    kind = {"hsi": "spectra", "pat": "images"}
    if is_images != (data.modality == "pat"):
        raise InputError(path, f"the model transfers {'images' if is_images else 'spectra'}, "
                               f"the input holds {kind[data.modality]}")
    if is_images and list(data.image_shape) != list(ex["image_shape"]):
        raise InputError(path, f"image size {data.image_shape} differs from the model's {tuple(ex['image_shape'])}")
    x_all, labels = data.samples, data.labels
    if not is_images:
        check_spectra(data, path)
    if model.model.method == "cinn" and ex["n_classes"]:
        if labels is None:
            raise InputError(path, "this model is conditioned on labels ('domain+label'): the input needs "
                                   f"{'a segmentation' if is_images else 'labels'}")
        if labels.max() >= ex["n_classes"]:
            raise InputError(path, f"label {int(labels.max())} out of range for the model's {ex['n_classes']} classes")
    src, dst = model.stats[source], model.stats[1 - source]
    if src.class_aligned and labels is not None and labels.max() >= len(src.class_mean):
        raise InputError(path, f"label {int(labels.max())} out of range for the model's {len(src.class_mean)} classes")
    dev = next(model.model.parameters(), torch.empty(0)).device  # closed-form methods have no parameters
    step = max(1, batch_size // (int(np.prod(x_all.shape[2:])) if is_images else 1))
    out = np.empty_like(x_all, dtype=np.float32)
    with torch.no_grad():
        for i in range(0, len(x_all), step):
            raw = torch.from_numpy(x_all[i:i + step]).float()
            by_class = None
            if src.class_aligned:  # each class onto the same class; data without labels: its most likely class
                by_class = (torch.from_numpy(labels[i:i + step]) if labels is not None
                            else src.nearest_class(src.whitened(raw)))
            x = src.normalize(raw, by_class).to(dev)
            y = None if labels is None or not ex["n_classes"] else torch.from_numpy(labels[i:i + step]).to(dev)
            out[i:i + step] = dst.denormalize(model.model.transfer(x, source, y).cpu(), by_class).numpy()
    if not np.all(np.isfinite(out)):
        raise InputError(path, "the transfer produced non-finite values: the model is unstable on this input; "
                               "nothing was written")
    if is_images:
        return ImageSet(out, data.wavelengths, data.segmentation, data.label_names)
    shares = ex.get("target_class_shares")
    weights = None
    if shares and data.labels is not None and direction == "sim2real":  # the target's class mix (labels.sample_weights)
        weights = sample_weights(np.array(list(shares.values()), np.float64), data.labels)
    return SpectraSet(out, data.wavelengths, data.labels, data.label_names, data.groups, weights=weights)
