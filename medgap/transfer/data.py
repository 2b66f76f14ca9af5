"""Input handling for transfer: reading files, checking sim/real compatibility, normalisation.

Accepted inputs (``load_data``):
- spectra ``.npz`` (``spectra`` (N, C), ``wavelengths``; optional ``labels``, ``label_names``, ``groups``);
- images ``.npz`` (``images`` (N, C, H, W), ``wavelengths``; optional ``segmentation``, ``label_names``);
- HSI cubes: ``.npz`` with ``cube`` (H, W, C) or (N, H, W, C), ``wavelengths`` and optional
  ``labels`` (H, W) / (N, H, W) with -1 for unlabelled pixels; or a bare ``.npy`` cube plus a
  wavelength vector given by the caller. Cubes become pixel spectra (groups = image index) and
  ``apply`` writes them back as cubes.

Normalisation: spectra are standardised per channel with the mean/std of their own domain -- as
measured (``hsi.brightness=keep``, the default: a spectrum's overall level tells a palm from a
forehead, so it is modelled, not reset), or first divided by their L2 norm (``l2``, the
publication's protocol; the output then has the target domain's mean norm); images are standardised
per channel. Both are undone with the target domain's statistics after transfer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medgap.errors import InputError
from medgap.io import ImageSet, SpectraSet, atomic_save_npz, load_npz_arrays, read_images, read_npy, read_spectra

__all__ = ["CubeLayout", "load_data", "write_like", "check_pair", "DomainStats", "fit_stats"]


@dataclass
class CubeLayout:
    """How pixel spectra were cut out of cubes, to write results back: shape (N, H, W, C), mask."""

    shape: tuple[int, int, int, int]
    keep: np.ndarray  # (N, H, W) bool: pixels that became spectra (all of them)
    labels: np.ndarray | None


def _cube_to_spectra(cube: np.ndarray, wavelengths, labels, path) -> tuple[SpectraSet, CubeLayout]:
    cube = np.asarray(cube)
    if cube.ndim == 3:
        cube = cube[None]
        labels = None if labels is None else np.asarray(labels)[None]
    if cube.ndim != 4:
        raise InputError(path, f"a cube must be (H, W, C) or (N, H, W, C), got shape {cube.shape}")
    n, h, w, c = cube.shape
    if wavelengths is None:
        raise InputError(path, "a bare cube needs a wavelength vector (give --wavelengths)")
    wl = np.asarray(wavelengths, dtype=np.float64).reshape(-1)
    if wl.size != c:
        raise InputError(path, f"cube has {c} channels but {wl.size} wavelengths were given")
    flat_labels, names = None, None
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n, h, w):
            raise InputError(path, f"label mask must have shape {(n, h, w)[1:] if n == 1 else (n, h, w)}, got {labels.shape[1:] if n == 1 else labels.shape}")
        flat_labels = labels.reshape(-1).astype(np.int64)
        if (flat_labels < 0).any():
            # unlabelled pixels (-1) make the set unlabelled as a whole: apply keeps the mask itself
            flat_labels = None
    groups = np.repeat(np.arange(n), h * w)
    spectra = SpectraSet(cube.reshape(-1, c), wl, flat_labels, names, groups, Path(path) if path else None)
    return spectra, CubeLayout((n, h, w, c), np.ones((n, h, w), bool), labels)


def load_data(path: str | Path, wavelengths: np.ndarray | None = None) -> tuple[SpectraSet | ImageSet, CubeLayout | None]:
    """Read spectra, images or an HSI cube; returns (data, cube layout or None)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    if path.suffix == ".npy":
        return _cube_to_spectra(read_npy(path), wavelengths, None, path)
    if path.suffix != ".npz":
        raise InputError(path, "expected a .npz (spectra, images or cube) or a .npy cube")
    arrays = load_npz_arrays(path)
    keys = set(arrays)
    if "cube" in keys:
        wl = arrays["wavelengths"] if "wavelengths" in keys else wavelengths
        return _cube_to_spectra(arrays["cube"], wl, arrays.get("labels"), path)
    if "images" in keys:
        return read_images(path), None
    if "spectra" in keys:
        data = read_spectra(path)
        return data, None
    raise InputError(path, f"no 'spectra', 'images' or 'cube' array; found {sorted(keys)}")


def write_like(path: str | Path, data: SpectraSet | ImageSet, layout: CubeLayout | None) -> Path:
    """Write ``data`` in the layout it was read from (cube npz for cubes), atomically."""
    from medgap.io import write_images, write_spectra

    if layout is not None:
        n, h, w, c = layout.shape
        arrays = {"cube": data.spectra.reshape(n, h, w, c), "wavelengths": data.wavelengths}
        if layout.labels is not None:
            arrays["labels"] = layout.labels
        if n == 1:
            arrays = {k: (v[0] if k in ("cube", "labels") else v) for k, v in arrays.items()}
        return atomic_save_npz(path, **arrays)
    if isinstance(data, ImageSet):
        return write_images(path, data)
    return write_spectra(path, data)


def check_spectra(data: SpectraSet, path) -> None:
    """Refuse spectra that cannot be L2-normalised."""
    norms = np.linalg.norm(data.spectra.astype(np.float64), axis=1)
    zero = int((norms <= 1e-12).sum())
    if zero:
        first = int(np.argmax(norms <= 1e-12))
        raise InputError(path, f"{zero} spectra are all zero (L2 norm 0), first at row {first}: remove them")


def _check_learnable(data: SpectraSet, path) -> None:
    """Training needs >= 2 channels and >= 2 spectra that are not all the same."""
    n, channels = data.spectra.shape
    if channels < 2:
        raise InputError(path, "has 1 channel: transfer maps spectra and needs at least 2 wavelengths")
    if n < 2:
        raise InputError(path, f"holds {n} spectrum: training needs at least 2")
    if not np.ptp(data.spectra, axis=0).any():
        raise InputError(path, f"all {n} spectra are identical: there is no distribution to learn")


def check_pair(sim, real, sim_path=None, real_path=None, *, need_labels: bool) -> str:
    """Check that sim and real data can be used together; return the modality ('hsi' or 'pat')."""
    sim_path = sim_path or getattr(sim, "path", None)
    real_path = real_path or getattr(real, "path", None)
    if type(sim) is not type(real):
        raise InputError(real_path, f"sim holds {type(sim).__name__} but real holds {type(real).__name__}")
    # different grids are refused rather than resampled: resampling would silently change the spectra
    if sim.wavelengths.shape != real.wavelengths.shape or not np.allclose(sim.wavelengths, real.wavelengths, atol=1e-6):
        raise InputError(real_path, f"wavelength grid ({len(real.wavelengths)} channels, {real.wavelengths[0]:g}-"
                                    f"{real.wavelengths[-1]:g} nm) differs from the simulation's "
                                    f"({len(sim.wavelengths)} channels, {sim.wavelengths[0]:g}-{sim.wavelengths[-1]:g} nm);"
                                    " resample one of them to the other's grid first")
    if sim.modality == "hsi":
        for data, path in ((sim, sim_path), (real, real_path)):
            check_spectra(data, path)
            _check_learnable(data, path)
        if need_labels and sim.labels is None:
            raise InputError(sim_path, "condition 'domain+label' needs labels in the simulated data; "
                                       "add 'labels' or use --condition domain")
        return sim.modality
    if sim.image_shape != real.image_shape:
        raise InputError(real_path, f"image size {real.image_shape} differs from the simulation's {sim.image_shape}")
    if need_labels and sim.labels is None:
        raise InputError(sim_path, "condition 'domain+label' needs 'segmentation' in the simulated images; "
                                   "add it or use --condition domain")
    return sim.modality


@dataclass
class DomainStats:
    """Per-channel mean/std (C,) in the normalised space, the mean L2 norm of raw spectra, and
    optionally a ZCA whitening matrix (C, C) of the standardised channels with its inverse.

    Without ``whiten`` the network sees per-channel z-scores (the publication's input). With it the
    channels are also decorrelated (ZCA: W = R^(-1/2) of the channel correlation R), so an untrained,
    identity network maps sim to real exactly as CORAL does (Sun et al. 2016: whiten with the
    source's covariance, colour with the target's) and training starts from that.
    """

    mean: torch.Tensor
    std: torch.Tensor
    scale: torch.Tensor  # () mean L2 norm of raw spectra (1 for images)
    whiten: torch.Tensor | None = None  # (C, C) symmetric
    unwhiten: torch.Tensor | None = None  # (C, C) its inverse
    l2: bool = True  # spectra: divided by their L2 norm before standardising (hsi.brightness=l2)
    class_mean: torch.Tensor | None = None  # (K, C) per-class mean of the whitened samples (train.align=class)
    class_root: torch.Tensor | None = None  # (K, C, C) root R of each class's covariance (R^T R), row vectors: z = u R + mean

    @property
    def class_aligned(self) -> bool:
        return self.class_mean is not None

    @property
    def class_root_inv(self) -> torch.Tensor:
        return torch.linalg.inv(self.class_root)

    def _channels_last(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return x @ matrix
        return torch.einsum("bchw,cd->bdhw", x, matrix)

    def normalize(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Raw (B, C) spectra or (B, C, H, W) images -> standardised (and whitened) network input;
        class-aligned statistics also standardise each spectrum within its class (``labels``; without
        them, its most likely class)."""
        z = self.whitened(x)
        if self.class_aligned and z.ndim == 2:
            labels = self.nearest_class(z) if labels is None else labels
            z = torch.einsum("bc,bcd->bd", z - self.class_mean[labels], self.class_root_inv[labels])
        return z

    def whitened(self, x: torch.Tensor) -> torch.Tensor:
        """Raw data -> standardised (and whitened) samples, before any per-class step."""
        if x.ndim == 2:
            if self.l2:
                x = x / x.norm(dim=1, keepdim=True)
            x = (x - self.mean) / self.std
        else:
            x = (x - self.mean[:, None, None]) / self.std[:, None, None]
        return x if self.whiten is None else self._channels_last(x, self.whiten)

    def nearest_class(self, z: torch.Tensor) -> torch.Tensor:
        """The most likely class of whitened samples z (B, C) under the per-class Gaussians: how
        class-aligned statistics treat data that come without labels."""
        d = torch.einsum("bkc,kcd->bkd", z[:, None, :] - self.class_mean, self.class_root_inv)
        return (-0.5 * d.pow(2).sum(-1) - torch.linalg.slogdet(self.class_root)[1]).argmax(1)

    def denormalize(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Network output -> raw units of this domain (spectra with ``l2``: L2 norm = the domain's mean norm)."""
        if self.class_aligned and x.ndim == 2:
            if labels is None:
                raise ValueError("class-aligned statistics need the class of every sample to denormalise")
            x = torch.einsum("bc,bcd->bd", x, self.class_root[labels]) + self.class_mean[labels]
        return self.from_whitened(x)

    def from_whitened(self, x: torch.Tensor) -> torch.Tensor:
        """Whitened samples (after any per-class step is undone) -> raw units of this domain."""
        if self.unwhiten is not None:
            x = self._channels_last(x, self.unwhiten)
        if x.ndim == 2:
            x = x * self.std + self.mean
            if not self.l2:
                return x
            return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12) * self.scale
        return x * self.std[:, None, None] + self.mean[:, None, None]

    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {f"{prefix}_mean": self.mean, f"{prefix}_std": self.std, f"{prefix}_scale": self.scale,
               f"{prefix}_l2": torch.tensor(float(self.l2))}
        if self.whiten is not None:
            out.update({f"{prefix}_whiten": self.whiten, f"{prefix}_unwhiten": self.unwhiten})
        if self.class_aligned:
            out.update({f"{prefix}_class_mean": self.class_mean, f"{prefix}_class_root": self.class_root})
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], prefix: str) -> "DomainStats":
        l2 = t.get(f"{prefix}_l2")  # absent in folders written before hsi.brightness existed: l2
        for key in (f"{prefix}_std", f"{prefix}_scale", f"{prefix}_class_std"):
            value = t.get(key)
            if value is not None and not bool((torch.isfinite(value) & (value > 0)).all()):
                raise ValueError(f"{key} holds values that are not positive and finite: a standardisation by "
                                 "it would divide by zero")
        root = t.get(f"{prefix}_class_root")
        if root is None and t.get(f"{prefix}_class_std") is not None:  # folders written with per-channel stds
            root = torch.diag_embed(t[f"{prefix}_class_std"])
        if root is not None and not bool(torch.isfinite(root).all() and (torch.linalg.svdvals(root).amin(-1) > 1e-8).all()):
            raise ValueError(f"{prefix}_class_root is not an invertible matrix per class: a class-wise "
                             "standardisation by it would divide by zero")
        return cls(t[f"{prefix}_mean"], t[f"{prefix}_std"], t[f"{prefix}_scale"], t.get(f"{prefix}_whiten"),
                   t.get(f"{prefix}_unwhiten"), True if l2 is None else bool(l2.item() > 0.5),
                   t.get(f"{prefix}_class_mean"), root)


def symmetric_roots(cov: np.ndarray, ridge: float = 0.0, floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """C^(-1/2) and C^(1/2) of a symmetric covariance C (eigenvalues floored at ``floor``, then + ``ridge``)."""
    vals, vecs = np.linalg.eigh(np.atleast_2d(cov))
    vals = np.clip(vals, floor, None) + ridge
    return (vecs * vals**-0.5) @ vecs.T, (vecs * vals**0.5) @ vecs.T


def _zca(z: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """R^(-1/2) and R^(1/2) of the correlation of standardised samples z (N, C), eigenvalues + ridge.

    The ridge keeps noise-only directions (eigenvalues near 0) from being blown up."""
    corr = np.cov(z, rowvar=False) if z.shape[0] > 1 else np.eye(z.shape[1])
    return symmetric_roots(corr, ridge=ridge)


def fit_stats(data: SpectraSet | ImageSet, whiten: bool = False, ridge: float = 1e-3,
              max_samples: int = 200_000, l2: bool = True) -> DomainStats:
    """Statistics of one domain (float64 accumulation, stored as float32); ``whiten`` adds the ZCA matrices;
    ``l2``: spectra are divided by their L2 norm first (the publication's protocol)."""
    if isinstance(data, SpectraSet):
        x = data.spectra.astype(np.float64)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        samples = x / norms if l2 else x  # (N, C)
        mean, std, scale = samples.mean(0), samples.std(0), norms.mean()
        samples = samples[::max(1, len(samples) // max_samples)]
    else:
        x = data.images.astype(np.float64)
        mean, std, scale = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3)), 1.0
        if whiten:  # pixel spectra (P, C), subsampled before they are copied out of the image layout
            pixels = x.reshape(len(x), x.shape[1], -1)
            step = max(1, pixels.shape[0] * pixels.shape[2] // max_samples)
            samples = np.moveaxis(pixels[:, :, ::step], 1, -1).reshape(-1, x.shape[1])
    std = np.where(std > 1e-12, std, 1.0)  # a constant channel must not divide by zero
    w = w_inv = None
    if whiten:
        w, w_inv = _zca((samples - mean) / std, ridge)
    f = lambda a: None if a is None else torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    return DomainStats(f(mean), f(std), f(scale), f(w), f(w_inv), l2)
