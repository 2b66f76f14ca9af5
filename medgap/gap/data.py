"""The two datasets of ``medgap gap``: volumes, folders, BIDS, DICOM or spectra, loaded the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from medgap.adapters.bids import find_anat, is_bids_root
from medgap.errors import InputError
from medgap.io import (
    dicom_series,
    is_volume_file,
    list_files,
    load_npz_arrays,
    read_images,
    read_spectra,
    read_volume,
)

Unit = Literal["auto", "volume", "slice"]
MAX_SAMPLES_MMD = 2000
POSITION_BINS = 10
CV_REPEATS = 5
MAX_BOOTSTRAP_SPECTRA = 400


@dataclass
class GapData:
    """One side of a comparison, loaded and normalised.

    ``kind`` is ``"images"`` (``items`` is a list of 3D arrays in [0, 1], RAS order) or
    ``"spectra"`` (``spectra`` (N, C) raw, ``wavelengths`` (C,) nm).
    """

    name: str
    kind: str
    source: Path
    items: list[np.ndarray] = field(default_factory=list)
    spectra: np.ndarray | None = None
    wavelengths: np.ndarray | None = None
    labels: np.ndarray | None = None  # spectra: class per spectrum, when the file has labels
    item_names: list[str] = field(default_factory=list)  # images: file stem per volume (pairs subjects)

    def __len__(self) -> int:
        return len(self.items) if self.kind == "images" else int(self.spectra.shape[0])


def normalise_volume(data: np.ndarray) -> np.ndarray:
    """Robust min-max to [0, 1]: 0.5th-99.5th percentile of the non-zero voxels."""
    nonzero = data[data != 0]
    if nonzero.size == 0:
        return np.zeros_like(data)
    lo, hi = np.percentile(nonzero, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((data - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def load_gap_data(path: str | Path, name: str | None = None, max_spectra: int = 20000, seed: int = 0) -> GapData:
    """Read a NIfTI file/folder or a spectra/images ``.npz`` into a :class:`GapData`."""
    path = Path(path)
    name = name or path.name
    if not path.exists():
        raise InputError(path, "does not exist")
    if path.is_dir() and is_bids_root(path):
        files = find_anat(path)  # every T1w of a BIDS dataset
    elif path.is_dir():
        files = list_files(path, is_volume_file)
        npz = list_files(path, lambda p: p.suffix == ".npz")
        if not files and not npz and dicom_series(path):
            files = [path]  # a DICOM series folder is one volume
        if not files and not npz:
            raise InputError(path, "folder holds no volumes (.nii/.nii.gz/.nrrd/.mha/DICOM) or .npz files")
        if files and npz:
            raise InputError(path, "folder mixes NIfTI and .npz files: compare one kind at a time")
        if npz:
            parts = [load_gap_data(p, name, max_spectra, seed) for p in npz]
            return _concat_spectra(parts, name, path)
    elif is_volume_file(path) or path.name.upper() == "DICOMDIR":
        files = [path]
    elif path.suffix == ".npz":
        return _load_spectral(path, name, max_spectra, seed)
    else:
        raise InputError(path, "expected a volume (NIfTI, NRRD, MetaImage), a folder of volumes, a DICOM series "
                               "folder, or a .npz file")
    items = []
    for file in files:
        vol = read_volume(file).require_size((16, 16, 1), "medgap gap").to_canonical()
        if not np.any(vol.data):
            raise InputError(file, "image is all zero")
        items.append(normalise_volume(vol.data))
    return GapData(name, "images", path, items=items, item_names=[_stem(f) for f in files])


def _stem(path: Path) -> str:
    """What identifies the subject of a volume file: BIDS sub-/ses- entities, else the name without suffix."""
    name = Path(path).name
    if name.startswith("sub-"):
        return "_".join(part for part in name.split("_") if part.startswith(("sub-", "ses-")))
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _load_spectral(path: Path, name: str, max_spectra: int, seed: int) -> GapData:
    keys = set(load_npz_arrays(path))
    if "images" in keys:
        data = read_images(path)
        spectra = data.images.transpose(0, 2, 3, 1).reshape(-1, data.images.shape[1])
        wavelengths = data.wavelengths
        labels = None if data.segmentation is None else data.segmentation.reshape(-1)
    else:
        data = read_spectra(path)
        spectra, wavelengths, labels = data.spectra, data.wavelengths, data.labels
    if len(spectra) > max_spectra:
        keep = np.random.default_rng(seed).choice(len(spectra), max_spectra, replace=False)
        spectra, labels = spectra[keep], None if labels is None else labels[keep]
    return GapData(name, "spectra", path, spectra=spectra.astype(np.float64), wavelengths=wavelengths, labels=labels)


def _concat_spectra(parts: list[GapData], name: str, path: Path) -> GapData:
    for part in parts[1:]:
        _check_same_wavelengths(parts[0], part)
    labels = (np.concatenate([p.labels for p in parts]) if all(p.labels is not None for p in parts) else None)
    return GapData(name, "spectra", path, spectra=np.concatenate([p.spectra for p in parts]),
                   wavelengths=parts[0].wavelengths, labels=labels)


def _check_same_wavelengths(a: GapData, b: GapData) -> None:
    if len(a.wavelengths) != len(b.wavelengths):
        raise InputError(b.source, f"has {len(b.wavelengths)} channels but {a.source} has {len(a.wavelengths)}")
    if not np.allclose(a.wavelengths, b.wavelengths, atol=0.5):
        raise InputError(b.source, f"wavelengths {b.wavelengths[0]:g}-{b.wavelengths[-1]:g} nm do not match "
                         f"{a.source} ({a.wavelengths[0]:g}-{a.wavelengths[-1]:g} nm)")
