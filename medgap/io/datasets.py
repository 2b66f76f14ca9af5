"""Spectra and spectral-image datasets (``.npz``) and :func:`describe_file`.

Both kinds speak one vocabulary, so code that transfers either asks the same questions once:
``samples`` (the (N, C) spectra or (N, C, H, W) images), ``labels`` (a class per spectrum, or per
pixel: the segmentation), ``label_names``, ``n_classes``, ``wavelengths``, ``modality`` (``"hsi"``
or ``"pat"``) and ``image_shape`` (None for spectra)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medgap.errors import InputError
from medgap.io.npz import _check_labels, _check_wavelengths, _optional_names, load_npz_arrays
from medgap.io.nifti import is_nifti
from medgap.io.itk import is_volume_file, read_volume
from medgap.io.checks import _check_nonempty, check_finite
from medgap.io.atomic import atomic_save_npz

PathLike = str | os.PathLike

# --------------------------------------------------------------------------- spectra


def _n_classes(names: list[str] | None, labels: np.ndarray | None) -> int | None:
    if names is not None:
        return len(names)
    return None if labels is None else int(labels.max()) + 1


@dataclass
class SpectraSet:
    """Pixel spectra with optional labels.

    Attributes:
        spectra: (N, C) float32 spectra (reflectance or any per-channel intensity).
        wavelengths: (C,) float64, nm, strictly increasing.
        labels: (N,) int64 class index per spectrum, or None (unlabelled data).
        label_names: K class names, or None.
        groups: (N,) subject/image id per spectrum for grouped splits, or None.
        path: the file it came from (used in error messages).
        weights: (N,) non-negative float64 weight per spectrum, or None. ``medgap transfer apply``
            writes them where the target's class shares were estimated: train a classifier with
            them (``sample_weight``) and it follows the target's class mix, absent classes weighing 0.
    """

    spectra: np.ndarray
    wavelengths: np.ndarray
    labels: np.ndarray | None = None
    label_names: list[str] | None = None
    groups: np.ndarray | None = None
    path: Path | None = None
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        p = self.path
        spectra = np.asarray(self.spectra)
        if spectra.ndim != 2:
            raise InputError(p, f"'spectra' must be 2D (N, C), got shape {spectra.shape}")
        _check_nonempty(spectra, p, "'spectra'")
        if spectra.dtype.kind not in "fiu":
            raise InputError(p, f"'spectra' must be numeric, got dtype {spectra.dtype}")
        self.spectra = spectra.astype(np.float32, copy=False)
        check_finite(self.spectra, p, "'spectra'")
        self.wavelengths = _check_wavelengths(self.wavelengths, self.spectra.shape[1], p)
        if self.label_names is not None:
            self.label_names = [str(s) for s in self.label_names]
        if self.labels is not None:
            self.labels = _check_labels(self.labels, len(self), self.label_names, p, "labels")
        if self.groups is not None:
            self.groups = np.asarray(self.groups).reshape(-1)
            if self.groups.shape[0] != len(self):
                raise InputError(p, f"'groups' has {self.groups.shape[0]} entries but there are {len(self)} spectra")
        if self.weights is not None:
            self.weights = _check_weights(self.weights, len(self), p)

    modality = "hsi"
    image_shape = None

    def __len__(self) -> int:
        return int(self.spectra.shape[0])

    @property
    def samples(self) -> np.ndarray:
        return self.spectra

    @property
    def n_classes(self) -> int | None:
        return _n_classes(self.label_names, self.labels)

    def subset(self, index: np.ndarray) -> "SpectraSet":
        return SpectraSet(
            self.spectra[index],
            self.wavelengths,
            None if self.labels is None else self.labels[index],
            self.label_names,
            None if self.groups is None else self.groups[index],
            self.path,
            None if self.weights is None else self.weights[index],
        )


def _check_weights(weights, n: int, path) -> np.ndarray:
    w = np.asarray(weights)
    if w.ndim != 1 or w.shape[0] != n:
        raise InputError(path, f"'weights' must have one entry per spectrum ({n}), got shape {w.shape}")
    if w.dtype.kind not in "fiu":
        raise InputError(path, f"'weights' must be numeric, got dtype {w.dtype}")
    w = w.astype(np.float64, copy=False)
    check_finite(w, path, "'weights'")
    if (w < 0).any():
        raise InputError(path, "'weights' must not be negative")
    return w


def read_spectra(path: PathLike) -> SpectraSet:
    """Read a spectra ``.npz`` file (see module docstring), validating every field."""
    arrays = load_npz_arrays(path, ("spectra", "wavelengths"))
    return SpectraSet(
        spectra=arrays["spectra"],
        wavelengths=arrays["wavelengths"],
        labels=arrays.get("labels"),
        label_names=_optional_names(arrays, "label_names"),
        groups=arrays.get("groups"),
        path=Path(path),
        weights=arrays.get("weights"),
    )


def write_spectra(path: PathLike, data: SpectraSet) -> Path:
    arrays: dict[str, np.ndarray] = {"spectra": data.spectra, "wavelengths": data.wavelengths}
    if data.labels is not None:
        arrays["labels"] = data.labels
    if data.label_names is not None:
        arrays["label_names"] = np.asarray(data.label_names, dtype=str)
    if data.groups is not None:
        groups = np.asarray(data.groups)
        arrays["groups"] = groups.astype(str) if groups.dtype == object else groups
    if data.weights is not None:
        arrays["weights"] = data.weights
    return atomic_save_npz(path, **arrays)


# --------------------------------------------------------------------------- spectral images


@dataclass
class ImageSet:
    """Multispectral images with optional segmentations.

    Attributes:
        images: (N, C, H, W) float32.
        wavelengths: (C,) float64, nm, strictly increasing.
        segmentation: (N, H, W) int64 class map, or None.
        label_names: K class names, or None.
        path: the file it came from (used in error messages).
    """

    images: np.ndarray
    wavelengths: np.ndarray
    segmentation: np.ndarray | None = None
    label_names: list[str] | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        p = self.path
        images = np.asarray(self.images)
        if images.ndim != 4:
            raise InputError(p, f"'images' must be 4D (N, C, H, W), got shape {images.shape}")
        _check_nonempty(images, p, "'images'")
        self.images = images.astype(np.float32, copy=False)
        check_finite(self.images, p, "'images'")
        self.wavelengths = _check_wavelengths(self.wavelengths, self.images.shape[1], p)
        if self.label_names is not None:
            self.label_names = [str(s) for s in self.label_names]
        if self.segmentation is not None:
            seg = np.asarray(self.segmentation)
            n, _, h, w = self.images.shape
            if seg.shape != (n, h, w):
                raise InputError(p, f"'segmentation' must have shape {(n, h, w)}, got {seg.shape}")
            flat = _check_labels(seg.reshape(n, -1), n, self.label_names, p, "segmentation")
            self.segmentation = flat.reshape(n, h, w)

    modality = "pat"

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def samples(self) -> np.ndarray:
        return self.images

    @property
    def labels(self) -> np.ndarray | None:
        """The class of every pixel (the segmentation), as ``SpectraSet.labels`` is of every spectrum."""
        return self.segmentation

    @property
    def n_classes(self) -> int | None:
        return _n_classes(self.label_names, self.segmentation)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.images.shape[2:])


def read_images(path: PathLike) -> ImageSet:
    """Read a spectral images ``.npz`` file (see module docstring), validating every field."""
    arrays = load_npz_arrays(path, ("images", "wavelengths"))
    return ImageSet(
        images=arrays["images"],
        wavelengths=arrays["wavelengths"],
        segmentation=arrays.get("segmentation"),
        label_names=_optional_names(arrays, "label_names"),
        path=Path(path),
    )


def write_images(path: PathLike, data: ImageSet) -> Path:
    arrays: dict[str, np.ndarray] = {"images": data.images, "wavelengths": data.wavelengths}
    if data.segmentation is not None:
        arrays["segmentation"] = data.segmentation
    if data.label_names is not None:
        arrays["label_names"] = np.asarray(data.label_names, dtype=str)
    return atomic_save_npz(path, **arrays)


def describe_file(path: PathLike, series: str | None = None) -> dict:
    """What a volume (NIfTI, NRRD, MetaImage, DICOM series folder) or medgap ``.npz`` file holds
    (shape, geometry, channels, labels), validated."""
    path = Path(path)
    dicom = path.is_dir() or path.name.upper() == "DICOMDIR"
    if is_volume_file(path) or dicom:
        vol = read_volume(path, series=series)
        kind = "nifti" if is_nifti(path) else "dicom series" if dicom else path.suffix[1:].lower()
        return {
            "file": str(path),
            "kind": f"{kind} volume",
            "shape": list(vol.shape),
            "spacing_mm": [round(s, 4) for s in vol.spacing],
            "orientation": vol.orientation,
            "range": [float(vol.data.min()), float(vol.data.max())],
        }
    if path.suffix == ".npz":
        keys = load_npz_arrays(path, ()).keys()
        if "spectra" in keys:
            s = read_spectra(path)
            kind, shape, labels = "spectra", list(s.spectra.shape), s.labels
        elif "images" in keys:
            s = read_images(path)
            kind, shape, labels = "spectral images", list(s.images.shape), s.segmentation
        else:
            raise InputError(path, f"neither a spectra nor an images file: keys {sorted(keys)}")
        return {
            "file": str(path),
            "kind": kind,
            "shape": shape,
            "wavelengths_nm": [float(s.wavelengths[0]), float(s.wavelengths[-1]), len(s.wavelengths)],
            "label_names": s.label_names,
            "labelled": labels is not None,
        }
    raise InputError(path, "unknown file type: expected .nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd, a DICOM "
                           "series folder or .npz")
