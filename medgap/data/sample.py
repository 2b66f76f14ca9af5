"""Real MR data that ships offline inside the nilearn wheel (no download).

The ICBM 2009a nonlinear symmetric template (Fonov et al., NeuroImage 2011): an
average T1-weighted brain of 152 adults, with grey- and white-matter probability
maps and a brain mask, 197 x 233 x 189 voxels at 1 mm, RAS orientation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from medgap.io import Volume

__all__ = ["SampleBrain", "load_icbm152", "resample_isotropic"]


@dataclass(frozen=True)
class SampleBrain:
    """ICBM152 T1 (intensities in [0, 1]), GM/WM probabilities in [0, 1], binary brain mask."""

    t1: Volume
    gm: Volume
    wm: Volume
    mask: Volume

    def describe(self) -> dict[str, object]:
        return {
            "shape": list(self.t1.shape),
            "spacing_mm": [round(s, 3) for s in self.t1.spacing],
            "orientation": self.t1.orientation,
            "brain_voxels": int(self.mask.data.sum()),
            "t1_mean_in_brain": float(self.t1.data[self.mask.data > 0].mean()),
            "wm_fraction_in_brain": float((self.wm.data[self.mask.data > 0] > 0.5).mean()),
            "gm_fraction_in_brain": float((self.gm.data[self.mask.data > 0] > 0.5).mean()),
        }


def resample_isotropic(volume: Volume, spacing_mm: float, order: int = 1) -> Volume:
    """Resample to isotropic ``spacing_mm`` voxels, keeping the world extent.

    The corner voxel centres stay where they are (``scipy.ndimage.zoom`` with
    ``grid_mode=False``), so the new affine is the old one with its columns scaled by
    ``(old - 1) / (new - 1)`` along each axis.
    """
    old = np.array(volume.shape, dtype=np.float64)
    extent = (old - 1) * np.array(volume.spacing)
    new = np.maximum(2, np.round(extent / spacing_mm).astype(int) + 1)
    data = ndimage.zoom(volume.data, new / old, order=order, mode="nearest", grid_mode=False)
    scale = (old - 1) / (np.array(data.shape) - 1)
    affine = volume.affine.copy()
    affine[:3, :3] = affine[:3, :3] * scale[None, :]
    return Volume(data.astype(np.float32), affine, volume.header, None)


@lru_cache(maxsize=4)
def load_icbm152(resolution_mm: float = 1.0) -> SampleBrain:
    """Return the ICBM152 T1, GM, WM and brain mask at ``resolution_mm`` (1 mm native).

    Nothing is downloaded: the files come from the installed nilearn package.
    """
    from nilearn import datasets

    images = {
        "t1": datasets.load_mni152_template(resolution=1),
        "gm": datasets.load_mni152_gm_template(resolution=1),
        "wm": datasets.load_mni152_wm_template(resolution=1),
        "mask": datasets.load_mni152_brain_mask(resolution=1),
    }
    volumes = {}
    for name, img in images.items():
        data = np.asarray(img.dataobj, dtype=np.float32)
        vol = Volume(data, img.affine.copy(), img.header.copy(), None)
        if abs(resolution_mm - 1.0) > 1e-6:
            vol = resample_isotropic(vol, resolution_mm, order=0 if name == "mask" else 1)
        if name == "mask":
            vol.data = (vol.data > 0.5).astype(np.float32)
        else:
            vol.data = np.clip(vol.data, 0.0, 1.0)
        vol.data.setflags(write=False)  # cached and shared: callers copy before changing
        volumes[name] = vol
    return SampleBrain(**volumes)
