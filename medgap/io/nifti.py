"""NIfTI volumes (``.nii``, ``.nii.gz``) through nibabel, with the whole file checked against its header."""

from __future__ import annotations

import gzip
import io as _io
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np

from medgap.errors import InputError
from medgap.io.checks import _check_nonempty, check_finite, check_input_size
from medgap.io.atomic import atomic_path

PathLike = str | os.PathLike


def is_nifti(path: PathLike) -> bool:
    name = str(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


# --------------------------------------------------------------------------- NIfTI

# Voxel sizes outside this range (mm) are header corruption, not anatomy.
SPACING_RANGE_MM = (1e-4, 1e3)
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def _gunzip_verified(path: Path, keep: "Callable[[bytes], int]") -> tuple[bytes, int]:
    """Decompress the whole gzip file, verifying every member's CRC and length.

    nibabel stops reading at the end of the image, so a corrupted tail (CRC mismatch,
    missing trailer) goes unnoticed; here the stream is read to its end. ``keep(head)``
    is called once the first bytes are out and says how many bytes to keep in memory
    (the size the NIfTI header declares): the rest is decompressed only to be checked,
    so a header that declares more than the file holds never allocates it. Returns the kept
    bytes and the length of the whole decompressed stream.
    """
    kept = bytearray()
    limit: int | None = None
    total = 0

    def take(out: bytes) -> None:
        nonlocal limit, total
        total += len(out)
        if limit is None:
            kept.extend(out)
            if len(kept) >= 540:
                limit = keep(bytes(kept))
                del kept[limit:]
        elif len(kept) < limit:
            kept.extend(out[: limit - len(kept)])

    with open(path, "rb") as fh:
        data = fh.read(_CHUNK)
        if not data.startswith(_GZIP_MAGIC):
            raise InputError(path, "not gzip-compressed, although the name ends in .gz")
        while data:  # one iteration per gzip member
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                while not inflater.eof:
                    if not data:
                        data = fh.read(_CHUNK)
                        if not data:
                            take(inflater.flush())
                            if not inflater.eof:
                                raise InputError(path, "truncated gzip stream (the file ends before the data does)")
                            break
                    take(inflater.decompress(data, _CHUNK))  # at most 1 MiB out per call
                    data = inflater.unconsumed_tail
            except zlib.error as exc:
                raise InputError(path, f"corrupt gzip stream ({exc})") from None
            data = inflater.unused_data or fh.read(_CHUNK)
            if data and not data.startswith(_GZIP_MAGIC):
                raise InputError(path, f"{len(data)}+ bytes of trailing garbage after the gzip stream")
    if limit is None:
        keep(bytes(kept))  # too short for any header: let the header check say so
    return bytes(kept), total


def _parse_nifti_header(path: Path, head: bytes) -> nib.Nifti1Header:
    """The NIfTI-1/2 header at the start of ``head``, checked for a size the file can hold."""
    if len(head) < 348:
        raise InputError(path, f"too short for a NIfTI header ({len(head)} bytes, at least 348 needed)")
    sizes = {int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")}
    klass = nib.Nifti1Header if 348 in sizes else nib.Nifti2Header if 540 in sizes else None
    if klass is None or len(head) < klass.sizeof_hdr:
        raise InputError(path, "not a NIfTI file (the header size field is neither 348 nor 540)")
    try:
        raw = klass.from_fileobj(_io.BytesIO(head[: klass.sizeof_hdr]), check=False)
        # nibabel "fixes" a bad magic, offset or xform code with a log line; medgap refuses them
        # (negative pixdim, qfac and offset alignment stay accepted: common in valid files)
        for check in klass._get_checks():
            _, report = check(raw.copy(), fix=False)
            if report.problem_level >= 40 or any(k in report.problem_msg for k in ("form_code", "sizeof_hdr")):
                raise InputError(path, f"invalid NIfTI header: {report.problem_msg}")
        magic = bytes(raw["magic"]).rstrip(b"\x00")
        if magic in (b"ni1", b"ni2"):
            raise InputError(path, f"the header's magic {magic.decode()!r} says the voxels are in a separate .img "
                                   "file, but this is a single-file NIfTI (.nii): the file is mislabelled")
        for key in ("scl_slope", "scl_inter"):
            value = float(raw[key])
            if np.isinf(value):  # NaN is nibabel's "no scaling" and stays accepted
                raise InputError(path, f"invalid NIfTI header: {key} is {value}")
        offset = float(raw["vox_offset"])
        if not np.isfinite(offset) or offset < 0 or offset != int(offset):
            raise InputError(path, f"invalid NIfTI header: vox_offset {offset}")
        if int(raw["sform_code"]) == 0:  # the geometry comes from pixdim (with or without a qform)
            pixdim = np.asarray(raw["pixdim"][1:4], dtype=np.float64)
            if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
                # nibabel's check would quietly make them 1 mm
                form = "a qform" if int(raw["qform_code"]) else "no sform/qform"
                raise InputError(path, f"{form} and voxel sizes (pixdim) {pixdim.tolist()}: "
                                       "the geometry is unknown")
        header = klass.from_fileobj(_io.BytesIO(head[: klass.sizeof_hdr]), check=True)
        shape = tuple(int(d) for d in header.get_data_shape())
        dtype = header.get_data_dtype()
    except InputError:
        raise
    except Exception as exc:  # nibabel's HeaderDataError and friends
        raise InputError(path, f"invalid NIfTI header ({type(exc).__name__}: {exc})") from None
    if dtype.kind == "c":
        raise InputError(path, f"complex-valued voxels ({dtype}) are not supported: save magnitude or phase")
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise InputError(path, f"voxel type {dtype} is not a scalar intensity (RGB or other)")
    if not shape or any(d <= 0 for d in shape):
        raise InputError(path, f"header declares an empty or negative shape {shape}")
    return header


def _declared_bytes(header: nib.Nifti1Header) -> int:
    voxels = 1
    for d in header.get_data_shape():
        voxels *= int(d)
    offset = int(header.get_data_offset()) or header.sizeof_hdr + 4
    return offset + voxels * header.get_data_dtype().itemsize


def _load_nifti_image(path: Path) -> nib.Nifti1Image:
    """Open a .nii/.nii.gz after checking the whole file: its size exactly what the header declares
    (a wrong datatype or extra data shows as a mismatch), gzip CRCs, and a size it may expand to."""
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    if path.name.lower().endswith(".gz"):
        declared = {}

        def keep(head: bytes) -> int:
            declared["header"] = header = _parse_nifti_header(path, head)
            need = _declared_bytes(header)
            check_input_size(path, need, size, copies=_reading_copies(header))
            return need

        raw, total = _gunzip_verified(path, keep)
        _check_declared_size(path, declared["header"], total, "the stream holds")
        klass = nib.Nifti2Image if isinstance(declared["header"], nib.Nifti2Header) else nib.Nifti1Image
        return klass.from_bytes(raw)
    with open(path, "rb") as fh:
        header = _parse_nifti_header(path, fh.read(540))
    _check_declared_size(path, header, size, "the file has")
    check_input_size(path, size, size, copies=_reading_copies(header))
    return nib.load(str(path))


def _reading_copies(header) -> float:
    # the raw voxels plus the float32 copy every reader makes
    return 1.0 + 4.0 / header.get_data_dtype().itemsize


def _check_declared_size(path: Path, header, actual: int, holds: str) -> None:
    need = _declared_bytes(header)
    if actual < need:
        raise InputError(path, f"truncated: the header declares {need} bytes, {holds} {actual}")
    if actual > need:
        shape, dtype = tuple(int(d) for d in header.get_data_shape()), header.get_data_dtype()
        raise InputError(path, f"{actual - need} bytes more than the header declares ({need} bytes: shape {shape} "
                               f"of {dtype}): a wrong datatype in the header, or extra data after the image")


def _checked_affine(path: Path, img) -> np.ndarray:
    """The image's voxel -> world affine, refused when it is not a usable geometry."""
    try:
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:
        raise InputError(path, f"unusable orientation in the header ({type(exc).__name__}: {exc})") from None
    return check_geometry(path, affine)


def check_geometry(path: PathLike | None, affine: np.ndarray) -> np.ndarray:
    """``affine`` if it is a usable voxel -> world geometry (finite, invertible, sane voxel sizes)."""
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(path, "the header's sform/qform affine holds NaN or Inf")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12 or np.any(spacing == 0):
        raise InputError(path, "the header's affine is singular (zero voxel size or collapsed axes)")
    lo, hi = SPACING_RANGE_MM
    if np.any(spacing < lo) or np.any(spacing > hi):
        raise InputError(path, f"voxel size {np.round(spacing, 6).tolist()} mm is outside {lo}..{hi} mm: "
                               "the header's pixdim/sform is corrupt")
    return affine


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

    def require_size(self, at_least: tuple[int, int, int], purpose: str) -> "Volume":
        """This volume, refused (naming its file) when its extent along R, A, S (whatever the voxel
        order) is smaller than ``at_least`` voxels: each method says the least it can work with."""
        ornt = nib.orientations.io_orientation(self.affine)
        extent = [0, 0, 0]
        for axis, (world, _) in enumerate(ornt[: len(self.shape)]):
            extent[int(world)] = self.shape[axis]
        if any(have < need for have, need in zip(extent, at_least)):
            need = " x ".join(str(n) for n in at_least)
            raise InputError(self.path, f"volume of shape {self.shape} is too small for {purpose}: at least {need} "
                                        "voxels (left-right x front-back x up-down) are needed")
        return self

    def with_data(self, data: np.ndarray) -> "Volume":
        """A new Volume on the same grid holding ``data``."""
        return Volume(np.asarray(data, dtype=np.float32), self.affine.copy(), self.header, None)


def nifti_shape(path: PathLike) -> tuple[int, ...]:
    """The shape a NIfTI file's header declares, reading only the header (to size work before reading)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file does not exist" if not path.exists() else "is not a regular file")
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as fh:
            head = fh.read(540)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(path, f"cannot read as NIfTI ({type(exc).__name__}: {exc})") from None
    return tuple(int(d) for d in _parse_nifti_header(path, head).get_data_shape())


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
    if not path.is_file():
        raise InputError(path, "is not a regular file (a device, pipe or socket)")
    try:
        img = _load_nifti_image(path)
        affine = _checked_affine(path, img)
        shape = tuple(img.shape)
        while len(shape) > ndim and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) != ndim:
            kind = {2: "a 2D image", 4: "a 4D series"}.get(len(shape), f"{len(shape)}D data")
            raise InputError(path, f"expected a {ndim}D volume, got {kind} of shape {tuple(img.shape)}")
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    except InputError:
        raise
    except MemoryError:
        raise InputError(path, f"does not fit in memory (shape {img.shape})") from None
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(path, f"cannot read as NIfTI ({type(exc).__name__}: {exc})") from exc
    _check_nonempty(data, path, "image")
    if not allow_nonfinite:
        check_finite(data, path, "image")
    header = img.header.copy()
    return Volume(data, affine, header, path)


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
