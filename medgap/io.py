"""Read and write the files every medgap method uses, with clear errors and atomic writes.

Formats
-------
* NIfTI volumes (``.nii``, ``.nii.gz``) through nibabel: a :class:`Volume` keeps the
  voxel array together with the affine (voxel -> world mm) and the header, so that a
  written result lies on exactly the grid of its input.
* Spectra ``.npz``: ``spectra`` float (N, C), ``wavelengths`` float (C,) in nm, optional
  ``labels`` int (N,), ``label_names`` (K,), ``groups`` (N,) (subject or image id).
* Spectral images ``.npz``: ``images`` float (N, C, H, W), ``wavelengths`` (C,), optional
  ``segmentation`` int (N, H, W), ``label_names`` (K,).

Every problem with a user's file raises :class:`~medgap.errors.InputError` whose message
starts with the file name. Every write goes to a temporary file in the target folder
that is renamed over the target only once complete, so a failure never leaves a
partial output behind.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np

from medgap.errors import InputError

__all__ = [
    "Volume",
    "read_nifti",
    "write_nifti",
    "SpectraSet",
    "read_spectra",
    "write_spectra",
    "ImageSet",
    "read_images",
    "write_images",
    "atomic_path",
    "atomic_write_text",
    "atomic_save_npz",
    "check_finite",
    "is_nifti",
]

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path: PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    The temporary name keeps the suffixes of ``path`` (``.nii.gz``, ``.npz``...) so that
    libraries choosing a format by extension behave as for the final name. With
    ``is_dir=True`` a temporary folder is created and an existing target folder is
    replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if is_dir:
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                _remove(old)
                os.replace(path, old)
                os.replace(tmp, path)
                _remove(old)
            else:
                os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(p: Path) -> None:
    if p.is_dir():
        import shutil

        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def atomic_write_text(path: PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_save_npz(path: PathLike, **arrays: np.ndarray) -> Path:
    """``np.savez_compressed`` written atomically (the name gets ``.npz`` if it lacks it)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    for key, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise InputError(path, f"array '{key}' has dtype object, which cannot be saved without pickle")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return path


# --------------------------------------------------------------------------- validation


def check_finite(array: np.ndarray, path: PathLike | None, what: str) -> None:
    """Raise InputError if ``array`` holds NaN or Inf, saying how many values are bad."""
    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        raise InputError(path, f"{what} contains {int(bad.sum())} NaN/Inf value(s) out of {array.size}")


def _check_nonempty(array: np.ndarray, path: PathLike | None, what: str) -> None:
    if array.size == 0:
        raise InputError(path, f"{what} is empty (shape {tuple(array.shape)})")


def is_nifti(path: PathLike) -> bool:
    name = str(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


# --------------------------------------------------------------------------- NIfTI


@dataclass
class Volume:
    """A 3D image with its world geometry.

    Attributes:
        data: voxel values, float32, shape (X, Y, Z) in the file's voxel order.
        affine: (4, 4) voxel index -> world (mm) transform.
        header: the NIfTI header the volume came with (None for a new volume).
        path: the file it was read from, if any.
    """

    data: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    header: nib.Nifti1Header | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise InputError(self.path, f"affine must be 4x4, got {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis (column norms of the affine)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> str:
        """Axis codes such as ``'RAS'`` or ``'LPS'``."""
        return "".join(nib.aff2axcodes(self.affine))

    def to_canonical(self) -> "Volume":
        """The same image reoriented to the closest RAS voxel order (axis 2 = inferior -> superior)."""
        img = nib.as_closest_canonical(nib.Nifti1Image(self.data, self.affine))
        return Volume(np.asarray(img.dataobj, dtype=np.float32), img.affine.copy(), self.header, self.path)

    def with_data(self, data: np.ndarray) -> "Volume":
        """A new Volume on the same grid holding ``data``."""
        return Volume(np.asarray(data, dtype=np.float32), self.affine.copy(), self.header, None)


def read_nifti(path: PathLike, *, ndim: int = 3, allow_nonfinite: bool = False) -> Volume:
    """Read a NIfTI file into a :class:`Volume` (float32), checking it is usable.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        ndim: the number of dimensions expected (3 for volumes). Trailing singleton
            dimensions beyond ``ndim`` are dropped (a (X, Y, Z, 1) file is a volume).
        allow_nonfinite: keep NaN/Inf voxels instead of refusing the file.

    Raises:
        InputError: missing, unreadable or truncated file, wrong number of dimensions,
            empty array, NaN/Inf voxels.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    if path.is_dir():
        raise InputError(path, "is a folder, expected a NIfTI file")
    try:
        img = nib.load(str(path))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            img = nib.Nifti1Image.from_image(img)
        data = np.asarray(img.dataobj, dtype=np.float32)
    except InputError:
        raise
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(path, f"cannot read as NIfTI ({type(exc).__name__}: {exc})") from exc
    _check_nonempty(data, path, "image")
    while data.ndim > ndim and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != ndim:
        kind = {2: "a 2D image", 4: "a 4D series"}.get(data.ndim, f"{data.ndim}D data")
        raise InputError(path, f"expected a {ndim}D volume, got {kind} of shape {data.shape}")
    if not allow_nonfinite:
        check_finite(data, path, "image")
    header = img.header.copy()
    return Volume(data, img.affine.copy(), header, path)


def write_nifti(
    path: PathLike,
    data: np.ndarray,
    *,
    like: Volume | None = None,
    affine: np.ndarray | None = None,
) -> Path:
    """Write ``data`` as NIfTI atomically.

    The affine is ``affine`` if given, else ``like.affine``, else identity; ``like``'s
    header (orientation codes, units, description) is kept and its data type set to
    float32.
    """
    path = Path(path)
    if not is_nifti(path):
        raise InputError(path, "output name must end in .nii or .nii.gz")
    data = np.asarray(data, dtype=np.float32)
    if affine is None:
        affine = like.affine if like is not None else np.eye(4)
    header = like.header.copy() if like is not None and like.header is not None else None
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64), header=header)
    img.set_data_dtype(np.float32)
    # Keep the header's geometry consistent with the affine we write.
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header["scl_slope"] = 1.0
    img.header["scl_inter"] = 0.0
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


# --------------------------------------------------------------------------- npz helpers


def _load_npz(path: PathLike, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(path, "contains pickled objects, which medgap never loads") from exc
        raise InputError(path, f"cannot read as .npz ({exc})") from exc
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise InputError(path, f"cannot read as .npz: truncated or not an npz file ({exc})") from exc
    missing = [k for k in required if k not in arrays]
    if missing:
        raise InputError(path, f"missing key(s) {missing}; found {sorted(arrays)}")
    return arrays


def _optional_names(arrays: dict, key: str) -> list[str] | None:
    if key not in arrays:
        return None
    return [str(s) for s in np.asarray(arrays[key]).reshape(-1)]


def _check_labels(labels: np.ndarray, n: int, names: list[str] | None, path, key: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise InputError(path, f"'{key}' must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.shape[0] != n:
        raise InputError(path, f"'{key}' has {labels.shape[0]} entries but there are {n} samples")
    if labels.size and labels.min() < 0:
        raise InputError(path, f"'{key}' has negative value {int(labels.min())}")
    if names is not None and labels.size and labels.max() >= len(names):
        raise InputError(
            path, f"'{key}' value {int(labels.max())} is out of range for {len(names)} label_names"
        )
    return labels


def _check_wavelengths(wavelengths: np.ndarray, channels: int, path) -> np.ndarray:
    wavelengths = np.asarray(wavelengths, dtype=np.float64).reshape(-1)
    if wavelengths.shape[0] != channels:
        raise InputError(
            path, f"'wavelengths' has {wavelengths.shape[0]} values but the data has {channels} channels"
        )
    check_finite(wavelengths, path, "'wavelengths'")
    if channels > 1 and not np.all(np.diff(wavelengths) > 0):
        raise InputError(path, "'wavelengths' must be strictly increasing (nm)")
    return wavelengths


# --------------------------------------------------------------------------- spectra


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
    """

    spectra: np.ndarray
    wavelengths: np.ndarray
    labels: np.ndarray | None = None
    label_names: list[str] | None = None
    groups: np.ndarray | None = None
    path: Path | None = None

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

    def __len__(self) -> int:
        return int(self.spectra.shape[0])

    @property
    def n_classes(self) -> int | None:
        if self.label_names is not None:
            return len(self.label_names)
        if self.labels is not None:
            return int(self.labels.max()) + 1
        return None

    def subset(self, index: np.ndarray) -> "SpectraSet":
        return SpectraSet(
            self.spectra[index],
            self.wavelengths,
            None if self.labels is None else self.labels[index],
            self.label_names,
            None if self.groups is None else self.groups[index],
            self.path,
        )


def read_spectra(path: PathLike) -> SpectraSet:
    """Read a spectra ``.npz`` file (see module docstring), validating every field."""
    arrays = _load_npz(path, ("spectra", "wavelengths"))
    return SpectraSet(
        spectra=arrays["spectra"],
        wavelengths=arrays["wavelengths"],
        labels=arrays.get("labels"),
        label_names=_optional_names(arrays, "label_names"),
        groups=arrays.get("groups"),
        path=Path(path),
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

    def __len__(self) -> int:
        return int(self.images.shape[0])


def read_images(path: PathLike) -> ImageSet:
    """Read a spectral images ``.npz`` file (see module docstring), validating every field."""
    arrays = _load_npz(path, ("images", "wavelengths"))
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


def describe_file(path: PathLike) -> dict:
    """What a NIfTI or medgap ``.npz`` file holds (shape, geometry, channels, labels), validated."""
    path = Path(path)
    if is_nifti(path):
        vol = read_nifti(path, ndim=3)
        return {
            "file": str(path),
            "kind": "nifti volume",
            "shape": list(vol.shape),
            "spacing_mm": [round(s, 4) for s in vol.spacing],
            "orientation": vol.orientation,
            "range": [float(vol.data.min()), float(vol.data.max())],
        }
    if path.suffix == ".npz":
        keys = _load_npz(path, ()).keys()
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
    raise InputError(path, "unknown file type: expected .nii, .nii.gz or .npz")
