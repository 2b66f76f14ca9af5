"""Axial slices of a NIfTI volume on the model grid, and the way back to the volume's grid.

A volume in any orientation is reoriented to RAS (nibabel), the in-plane
bounding box of its foreground is cropped, scaled by one factor per mm (no
aspect distortion; anisotropic in-plane spacing is resampled to square pixels)
to fit the model size ``(H, W)``, centred and zero-padded. Each slice is
normalised to [0, 1] (min-max, as in the reference, or between percentiles).
:func:`restore_volume` inverts every step, so results land on the input grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from medgap.errors import InputError

__all__ = ["SliceStack", "prepare_volume", "restore_volume", "slices_like", "foreground_mask", "load_for_harmonize",
           "load_test_slices"]

_RAS = axcodes2ornt("RAS")
# the least a volume needs: slices of 16 x 16 voxels (one slice is a valid input)
MIN_SIZE = (16, 16, 1)


@dataclass
class SliceStack:
    """Slices of one volume on the model grid.

    slices: (N, 1, H, W) float32 in [0, 1]; masks: (N, 1, H, W) bool (brain or foreground);
    index: (N,) axial index in the RAS-reoriented volume; position: (N,) relative position
    of the slice within the volume's foreground extent (0 = inferior, 1 = superior);
    lo, hi: (N,) normalisation bounds in the volume's units. The remaining fields
    describe the geometry needed by :func:`restore_volume`.
    """

    slices: np.ndarray
    masks: np.ndarray
    index: np.ndarray
    position: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    ornt: np.ndarray
    ras_shape: tuple[int, int, int]
    box: tuple[int, int, int, int]  # x0, x1, y0, y1 of the crop in the RAS volume
    resized: tuple[int, int]  # (h, w) of the crop after scaling
    offset: tuple[int, int]  # top-left of the scaled crop inside (H, W)
    fg_ras: np.ndarray  # (X, Y, Z) bool foreground in RAS

    def __len__(self) -> int:
        return len(self.index)


def _to_ras(arr: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    return apply_orientation(arr, ornt_transform(ornt, _RAS))


def _from_ras(arr: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    return apply_orientation(arr, ornt_transform(_RAS, ornt))


def foreground_mask(data: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Voxels brighter than ``fraction`` of the robust range (min .. 99.9th percentile)."""
    lo = float(data.min())
    hi = float(np.percentile(data, 99.9))
    if hi <= lo:
        return np.zeros(data.shape, dtype=bool)
    return data > lo + fraction * (hi - lo)


def _resize(batch: np.ndarray, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None]
    if mode == "nearest":
        out = F.interpolate(t, size=size, mode="nearest")
    else:
        # antialias only matters (and is only supported) for bilinear downsampling
        out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out[:, 0].numpy()


def prepare_volume(data: np.ndarray, affine: np.ndarray, image_size: tuple[int, int], *,
                   mask: np.ndarray | None = None, normalization: str = "minmax",
                   percentiles: tuple[float, float] = (0.5, 99.5), min_foreground: float = 0.02,
                   path=None) -> SliceStack:
    """Cut ``data (X, Y, Z)`` into axial model-size slices.

    ``mask`` (same shape, optional) restricts the foreground (skull-stripped
    targets); without it the foreground is :func:`foreground_mask`. Slices whose
    foreground covers less than ``min_foreground`` of the crop are skipped (left
    untouched on the way back). Raises :class:`InputError` for unusable volumes.
    """
    if data.ndim != 3:
        raise InputError(path, f"expected a 3D volume, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise InputError(path, f"{int((~np.isfinite(data)).sum())} voxels are NaN or infinite")
    if mask is not None and mask.shape != data.shape:
        raise InputError(path, f"mask shape {mask.shape} differs from the volume's {data.shape}")
    ornt = io_orientation(affine)
    vol = _to_ras(np.asarray(data, dtype=np.float32), ornt)
    fg = _to_ras(mask > 0, ornt) if mask is not None else foreground_mask(vol)
    if not fg.any():
        raise InputError(path, "the volume has no foreground (all zero or constant)")
    # voxel sizes along the RAS axes
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    ras_zooms = np.empty(3)
    ras_zooms[ornt[:, 0].astype(int)] = zooms
    xs, ys = np.nonzero(fg.any(axis=2))
    x0, x1 = max(xs.min() - 2, 0), min(xs.max() + 3, vol.shape[0])
    y0, y1 = max(ys.min() - 2, 0), min(ys.max() + 3, vol.shape[1])
    h_mm, w_mm = (x1 - x0) * ras_zooms[0], (y1 - y0) * ras_zooms[1]
    H, W = image_size
    scale = min(H / h_mm, W / w_mm)  # pixels per mm
    rh = max(1, min(H, int(round(h_mm * scale))))
    rw = max(1, min(W, int(round(w_mm * scale))))
    oh, ow = (H - rh) // 2, (W - rw) // 2

    fg_crop = fg[x0:x1, y0:y1]
    frac = fg_crop.reshape(-1, fg.shape[2]).mean(axis=0)
    keep = np.nonzero(frac >= min_foreground)[0]
    if len(keep) == 0:
        raise InputError(path, "no axial slice has enough foreground to harmonise")
    zs = np.nonzero(fg.any(axis=(0, 1)))[0]
    zmin, zmax = zs.min(), zs.max()
    position = (keep - zmin) / max(zmax - zmin, 1)

    crop = np.moveaxis(vol[x0:x1, y0:y1, keep], 2, 0)  # (N, h, w)
    mcrop = np.moveaxis(fg_crop[:, :, keep], 2, 0)
    if mask is not None:
        crop = np.where(mcrop, crop, 0.0)
    lo = np.empty(len(keep), np.float32)
    hi = np.empty(len(keep), np.float32)
    for i in range(len(keep)):
        vals = crop[i][mcrop[i]] if mask is not None else crop[i]
        if normalization == "percentile":
            lo[i], hi[i] = np.percentile(vals, percentiles)
        else:
            lo[i], hi[i] = vals.min(), vals.max()
        if mask is not None:
            lo[i] = min(lo[i], 0.0)  # background (0 outside the mask) stays at 0
    norm = np.clip((crop - lo[:, None, None]) / np.maximum(hi - lo, 1e-8)[:, None, None], 0, 1)
    slices = np.zeros((len(keep), 1, H, W), np.float32)
    masks = np.zeros((len(keep), 1, H, W), bool)
    slices[:, 0, oh:oh + rh, ow:ow + rw] = np.clip(_resize(norm, (rh, rw)), 0, 1)
    masks[:, 0, oh:oh + rh, ow:ow + rw] = _resize(mcrop.astype(np.float32), (rh, rw)) > 0.5
    return SliceStack(slices, masks, keep, position.astype(np.float32), lo, hi, ornt, vol.shape,
                      (x0, x1, y0, y1), (rh, rw), (oh, ow), fg)


def slices_like(stack: SliceStack, data: np.ndarray) -> np.ndarray:
    """Cut another volume on the same grid (a label or probability map) exactly as ``stack`` was:
    same slices, crop, scaling and padding, no normalisation. Returns (N, 1, H, W) float32."""
    x0, x1, y0, y1 = stack.box
    rh, rw = stack.resized
    oh, ow = stack.offset
    vol = _to_ras(np.asarray(data, dtype=np.float32), stack.ornt)
    crop = np.moveaxis(vol[x0:x1, y0:y1, stack.index], 2, 0)
    h, w = stack.slices.shape[-2:]
    out = np.zeros((len(stack), 1, h, w), np.float32)
    out[:, 0, oh:oh + rh, ow:ow + rw] = _resize(crop, (rh, rw))
    return out


def restore_volume(stack: SliceStack, slices: np.ndarray, original: np.ndarray, detail: str = "keep") -> np.ndarray:
    """Put model-grid ``slices (N, 1, H, W)`` in [0, 1] back on the grid of ``original (X, Y, Z)``.

    ``detail="keep"`` (default) adds the *change* the method made on the model grid,
    resized, to the source at its own resolution: the model grid is coarser than most
    scans (cpu-small: 64x80 for a ~200 mm field of view), and resampling the harmonised
    slice itself would blur away the source's fine anatomy. ``detail="resample"``
    returns the resampled harmonised slice. Intensities are mapped back to each slice's
    ``[lo, hi]``; only foreground voxels of the processed slices change, the background
    stays bit-identical.
    """
    if detail not in ("keep", "resample"):
        raise ValueError(f"detail must be 'keep' or 'resample', not {detail!r}")
    x0, x1, y0, y1 = stack.box
    rh, rw = stack.resized
    oh, ow = stack.offset
    scale = (stack.hi - stack.lo)[:, None, None]
    ornt = stack.ornt
    vol = _to_ras(np.asarray(original, dtype=np.float32), ornt).copy()
    region = vol[x0:x1, y0:y1][:, :, stack.index]  # (h, w, N)
    fg = stack.fg_ras[x0:x1, y0:y1][:, :, stack.index]
    harmonized = np.asarray(slices, np.float32)[:, 0, oh:oh + rh, ow:ow + rw]
    if detail == "resample":
        back = _resize(harmonized, (x1 - x0, y1 - y0)) * scale + stack.lo[:, None, None]
    else:
        change = harmonized - stack.slices[:, 0, oh:oh + rh, ow:ow + rw]
        back = np.moveaxis(region, 2, 0) + _resize(change, (x1 - x0, y1 - y0)) * scale
    region = np.where(fg, np.moveaxis(back, 0, 2), region)
    vol[x0:x1, y0:y1, stack.index] = region
    return _from_ras(vol, ornt).astype(np.float32)


def volume_nbytes_guard(shape: tuple[int, ...], path=None, budget_fraction: float = 0.5) -> None:
    """Refuse volumes whose float32 working copies would not fit in memory."""
    import os

    need = int(np.prod(shape)) * 4 * 6  # data, RAS copy, crop, slices, result, mask
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > budget_fraction * avail:
        raise InputError(path, f"volume of shape {tuple(shape)} needs ~{need / 2**30:.1f} GiB of working memory, "
                               f"more than half of the {avail / 2**30:.1f} GiB available")


def load_for_harmonize(path, mask_path=None, series: str | None = None):
    """Read a NIfTI (and optional mask) lazily checking size first. Returns (Volume, mask array|None)."""
    from medgap.io import is_nifti, nifti_shape, read_volume

    if is_nifti(path):
        volume_nbytes_guard(nifti_shape(path), path)
    vol = read_volume(path, series=series).require_size(MIN_SIZE, "harmonisation")
    mask = None
    if mask_path is not None:
        m = read_volume(mask_path)
        if m.shape != vol.shape:
            raise InputError(mask_path, f"mask shape {m.shape} differs from the image's {vol.shape}")
        low, high = float(m.data.min()), float(m.data.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise InputError(mask_path, f"values from {low:.4g} to {high:.4g}: a mask holds 0 and 1 (or "
                                        "probabilities in 0..1); is this an image given as --mask?")
        mask = m.data > 0.5
        if not mask.any():
            raise InputError(mask_path, "the mask is empty (no voxel above 0.5)")
    return vol, mask


def load_test_slices(image_size: tuple[int, int]):
    """The six real test subjects' slices (:func:`medgap.data.cohort.load_test_images`) on the model
    grid. Returns (slices (6, 1, H, W), brain masks, positions (6,), names)."""
    from medgap.data.cohort import TEST_POSITION, load_test_images
    from medgap.data.install import installed_path

    out, masks, names = [], [], []
    for name, vol, mvol in load_test_images():
        st = prepare_volume(vol, np.eye(4), tuple(image_size), mask=mvol, min_foreground=0.01,
                            path=installed_path(f"subject-{name}_slice.jpg"))
        out.append(st.slices)
        masks.append(st.masks)
        names.append(name)
    slices = torch.from_numpy(np.concatenate(out))
    return slices, torch.from_numpy(np.concatenate(masks)), torch.full((len(slices),), TEST_POSITION), names
