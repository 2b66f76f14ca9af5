"""medgap's apply steps as MONAI dictionary transforms, for ``Compose`` and ``Dataset`` pipelines.

They only wrap the public API (:class:`~medgap.harmonize.Harmonizer`,
:func:`~medgap.transfer.apply.apply_transfer`, :class:`~medgap.synthesize.api.Synthesizer`); the
model folder is loaded once, when the transform is built.

    from monai.transforms import Compose, LoadImaged, EnsureChannelFirstd
    from medgap.adapters.monai import HarmonizeD, EncodeD

    pipeline = Compose([LoadImaged("image"), EnsureChannelFirstd("image"),
                        HarmonizeD("image", "models/site_a"), EncodeD("image", "models/hagan", latent_key="z")])

Images are channel-first ``(1, X, Y, Z)`` arrays or MONAI ``MetaTensor``s; the voxel -> world
affine comes from the MetaTensor (``meta["affine"]``, RAS as MONAI's NIfTI reader gives it), or
the identity for plain arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform

from medgap.errors import InputError
from medgap.io import ImageSet, SpectraSet, Volume

__all__ = ["HarmonizeD", "TransferD", "EncodeD"]


def _volume(value, key: Hashable) -> tuple[Volume, object]:
    """(Volume, the original value) from a channel-first single-channel 3D image."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim != 4 or array.shape[0] != 1:
        raise InputError(None, f"'{key}': expected a channel-first (1, X, Y, Z) image, got shape {array.shape}")
    affine = getattr(value, "affine", None)
    affine = np.eye(4) if affine is None else np.asarray(torch.as_tensor(affine).cpu(), dtype=np.float64)
    return Volume(np.asarray(array[0], dtype=np.float32), affine), value


def _like(original, data: np.ndarray):
    """``data`` as the same type as ``original`` (a MetaTensor keeps its metadata)."""
    if isinstance(original, torch.Tensor):
        out = original.clone()
        out.data = torch.as_tensor(data, dtype=torch.float32)
        return out
    return data


class HarmonizeD(MapTransform):
    """Harmonise the images under ``keys`` with a harmonize model folder (``--method`` as in the CLI)."""

    def __init__(self, keys, model_dir: str | Path, method: str = "auto", device: str = "cpu",
                 allow_missing_keys: bool = False):
        from medgap.harmonize import Harmonizer

        super().__init__(keys, allow_missing_keys)
        self.harmonizer = Harmonizer.load(model_dir, device=device)
        self.method = method

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            volume, original = _volume(d[key], key)
            d[key] = _like(original, self.harmonizer.harmonize_volume(volume, method=self.method)[None])
        return d


class TransferD(MapTransform):
    """Transfer spectra ``(N, C)`` or spectral images ``(N, C, H, W)`` under ``keys`` with a transfer model.

    ``wavelengths`` (nm) must be the model's grid; ``direction`` is ``sim2real`` or ``real2sim``.
    Models conditioned on labels (``domain+label``) read them from ``label_key``: (N,) class per
    spectrum, or (N, H, W) segmentations for images.
    """

    def __init__(self, keys, model_dir: str | Path, wavelengths: Sequence[float], direction: str = "sim2real",
                 label_key: str | None = None, device: str = "cpu", allow_missing_keys: bool = False):
        from medgap.transfer.apply import load_transfer

        super().__init__(keys, allow_missing_keys)
        self.model = load_transfer(model_dir, device)
        self.wavelengths = np.asarray(wavelengths, dtype=np.float64)
        self.direction = direction
        self.label_key = label_key

    def __call__(self, data: Mapping) -> dict:
        from medgap.transfer.apply import apply_transfer

        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            labels = None if self.label_key is None else np.asarray(torch.as_tensor(d[self.label_key]).cpu())
            batch = (SpectraSet(array, self.wavelengths, labels) if array.ndim == 2
                     else ImageSet(array, self.wavelengths, labels) if array.ndim == 4 else None)
            if batch is None:
                raise InputError(None, f"'{key}': expected spectra (N, C) or images (N, C, H, W), got {array.shape}")
            out = apply_transfer(self.model, batch, self.direction)
            d[key] = _like(value, out.spectra if array.ndim == 2 else out.images)
        return d


class EncodeD(MapTransform):
    """Encode the volumes under ``keys`` with an HA-GAN model folder; the latent goes to ``latent_key``
    (``"<key>_z"`` by default), the image itself is left as it was."""

    def __init__(self, keys, model_dir: str | Path, latent_key: str | None = None, device: str = "cpu",
                 allow_missing_keys: bool = False):
        from medgap.synthesize.api import Synthesizer

        super().__init__(keys, allow_missing_keys)
        self.synthesizer = Synthesizer.load(model_dir, device=device)
        self.latent_key = latent_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            volume, _ = _volume(d[key], key)
            z, _ = self.synthesizer.encode(volume, reconstruct=False)
            d[self.latent_key or f"{key}_z"] = torch.as_tensor(z)
        return d
