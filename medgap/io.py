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
import gzip
import io as _io
import os
import re
import shutil
import socket
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

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
    "load_npz_arrays",
    "read_npy",
    "list_files",
    "output_folder",
    "read_volume",
    "dicom_series",
    "is_volume_file",
    "nifti_shape",
    "remove_stale_temporaries",
]

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- atomic writes

# Temporary names carry the host and process that made them, so a later write to the same
# target can remove what a killed process (SIGKILL, power loss) left behind -- and only that.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back (no threads write files here).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_temporaries(path: PathLike) -> list[Path]:
    """Delete temporaries of ``path`` left by dead medgap processes on this host; return them.

    Only names medgap itself makes (``.<name>.<host>-<pid>.<random>.tmp...``) whose process no
    longer exists are touched.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(re.escape(_tmp_prefix(path)) + r"(\d+)\.[A-Za-z0-9_]+\.(tmp|old)")
    removed = []
    for entry in path.parent.iterdir():
        m = pattern.match(entry.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            _remove(entry)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    The temporary name keeps the suffixes of ``path`` (``.nii.gz``, ``.npz``...) so that
    libraries choosing a format by extension behave as for the final name. With
    ``is_dir=True`` a temporary folder is created and an existing target folder is
    replaced (callers check first that the folder is theirs to replace).

    Modes follow the user's umask like any Unix tool (``mkstemp`` would make 0600/0700);
    a file written over an existing one keeps that file's mode. On any exception,
    KeyboardInterrupt and SIGTERM (see :func:`medgap.cli.main`) the temporary is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        suffix = "".join(path.suffixes) if not is_dir else ""
        prefix = f"{_tmp_prefix(path)}{os.getpid()}."
        umask = _umask()
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=path.parent))
            mode = 0o777 & ~umask
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=f".tmp{suffix}", dir=path.parent)
            os.close(fd)
            tmp = Path(name)
            mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o666 & ~umask
    except OSError as exc:  # errors name the user's output, not our temporary
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        yield tmp
        if is_dir:  # some writers (safetensors) create 0600 files whatever the umask
            for root, dirs, files in os.walk(tmp):
                for name in dirs:
                    os.chmod(os.path.join(root, name), 0o777 & ~umask)
                for name in files:
                    os.chmod(os.path.join(root, name), 0o666 & ~umask)
        os.chmod(tmp, mode)
        if is_dir and path.exists():
            old = tmp.with_name(tmp.name[: -len(".tmp")] + ".old")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        if exc.filename is None or str(tmp) in str(exc.filename):  # our temporary: name the user's output
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    except BaseException:
        _remove(tmp)
        raise


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
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
    """``np.savez_compressed`` written atomically; the name must end in ``.npz`` (none is added)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError(path, "an .npz output must end in .npz (medgap never adds a suffix to the name you give)")
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


def list_files(folder: PathLike, accept: Callable[[Path], bool], *, recursive: bool = False) -> list[Path]:
    """Sorted regular files in ``folder`` that ``accept`` takes, skipping hidden names.

    Hidden entries (``.name``: editor swap files, a write still in progress, ``.git``)
    are never inputs, and neither is anything inside a hidden folder.
    """
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found
                  if not any(part.startswith(".") for part in p.relative_to(folder).parts)
                  and p.is_file() and accept(p))


def output_folder(path: PathLike) -> Path:
    """Create (if needed) the folder a command writes its outputs into; refuse a path that is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(path, "exists and is not a folder: choose another output folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(path, f"cannot create the output folder ({exc.strerror})") from None
    return path


def is_nifti(path: PathLike) -> bool:
    name = str(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


# --------------------------------------------------------------------------- NIfTI

# Voxel sizes outside this range (mm) are header corruption, not anatomy.
SPACING_RANGE_MM = (1e-4, 1e3)
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def _gunzip_verified(path: Path, keep: "Callable[[bytes], int]") -> bytes:
    """Decompress the whole gzip file, verifying every member's CRC and length.

    nibabel stops reading at the end of the image, so a corrupted tail (CRC mismatch,
    missing trailer) goes unnoticed; here the stream is read to its end. ``keep(head)``
    is called once the first bytes are out and says how many bytes to keep in memory
    (the size the NIfTI header declares): the rest is decompressed only to be checked,
    so a header that declares more than the file holds never allocates it.
    """
    kept = bytearray()
    limit: int | None = None

    def take(out: bytes) -> None:
        nonlocal limit
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
    return bytes(kept)


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
        offset = float(raw["vox_offset"])
        if not np.isfinite(offset) or offset < 0 or offset != int(offset):
            raise InputError(path, f"invalid NIfTI header: vox_offset {offset}")
        if int(raw["sform_code"]) == 0 and int(raw["qform_code"]) == 0:
            pixdim = np.asarray(raw["pixdim"][1:4], dtype=np.float64)
            if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
                # nibabel's check would quietly make them 1 mm
                raise InputError(path, f"no sform/qform and voxel sizes (pixdim) {pixdim.tolist()}: "
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
    """Open a .nii/.nii.gz after checking the whole file: size against header, gzip CRC."""
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    if path.name.lower().endswith(".gz"):
        declared = {}

        def keep(head: bytes) -> int:
            declared["header"] = _parse_nifti_header(path, head)
            return _declared_bytes(declared["header"])

        raw = _gunzip_verified(path, keep)
        need = _declared_bytes(declared["header"])
        if len(raw) < need:
            raise InputError(path, f"truncated: the header declares {need} bytes, the stream holds {len(raw)}")
        klass = nib.Nifti2Image if isinstance(declared["header"], nib.Nifti2Header) else nib.Nifti1Image
        return klass.from_bytes(raw)
    with open(path, "rb") as fh:
        header = _parse_nifti_header(path, fh.read(540))
    need = _declared_bytes(header)
    if size < need:
        raise InputError(path, f"truncated: the header declares {need} bytes, the file has {size}")
    return nib.load(str(path))


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


# --------------------------------------------------------------------------- NRRD, MetaImage, DICOM

ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


def is_itk_file(path: PathLike) -> bool:
    return str(path).lower().endswith(ITK_SUFFIXES)


def is_volume_file(path: PathLike) -> bool:
    """A file name :func:`read_volume` reads (NIfTI, NRRD, MetaImage)."""
    return is_nifti(path) or is_itk_file(path)


def dicom_series(folder: PathLike) -> dict[str, list[str]]:
    """The DICOM series in ``folder``: SeriesInstanceUID -> its slice files.

    A folder holding a ``DICOMDIR`` (or the DICOMDIR file itself) is read through its directory
    records (pydicom's FileSet), which name files in any subfolder; otherwise the slice files directly
    in ``folder`` are grouped by GDCM. Files are put in slice order when the series is read.
    """
    import SimpleITK as sitk

    folder = Path(folder)
    dicomdir = folder if folder.is_file() and folder.name.upper() == "DICOMDIR" else folder / "DICOMDIR"
    if dicomdir.is_file():
        return _dicomdir_series(dicomdir)
    folder = str(folder)
    try:
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
        return {uid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)) for uid in ids}
    except RuntimeError:
        return {}


def _itk_affine(image) -> np.ndarray:
    """The RAS voxel (x, y, z) -> world mm affine of a SimpleITK image (ITK's world is LPS)."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def _read_itk(path: Path, series: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Voxels (X, Y, Z) float32 and RAS affine of an NRRD/MetaImage file or a DICOM series folder.

    SimpleITK (ITK + GDCM) does the format work: NRRD/MetaImage headers, DICOM slice order,
    orientation and the rescale slope/intercept (so CT comes out in HU).
    """
    import SimpleITK as sitk

    if path.is_dir() or path.name.upper() == "DICOMDIR":
        found = dicom_series(path)
        if not found:
            raise InputError(path, "folder holds no DICOM series (nor is it a NIfTI/NRRD/MetaImage file)")
        numbers = {uid: _series_number(files[0]) for uid, files in found.items()}
        if series is None and len(found) > 1:
            listing = "; ".join(f"{uid} (series number {numbers[uid]}, {len(files)} files)"
                                for uid, files in found.items())
            raise InputError(path, f"holds {len(found)} DICOM series: choose one by SeriesInstanceUID or series "
                                   f"number ({listing})")
        uid = series if series is not None else next(iter(found))
        if uid not in found:  # a series number instead of a UID
            matches = [u for u, number in numbers.items() if number == str(series).strip()]
            if len(matches) != 1:
                raise InputError(path, f"no DICOM series {series!r} (by UID or series number); found "
                                       f"{ {u: numbers[u] for u in found} }")
            uid = matches[0]
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(_check_dicom_slices(path, found[uid]))
    else:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise InputError(path, f"cannot read as {path.suffix[1:].upper()} ({_itk_message(exc)})") from None
        need = int(np.prod(reader.GetSize(), dtype=np.float64)) * reader.GetNumberOfComponents()
        if reader.GetNumberOfComponents() != 1:
            raise InputError(path, f"{reader.GetNumberOfComponents()} components per voxel: expected a scalar image")
        stored = sum(f.stat().st_size for f in {path, *_itk_data_files(path)} if f.is_file())
        if need > _MAX_DEFLATE_RATIO * max(stored, 1) + (1 << 20):
            raise InputError(path, f"declares {reader.GetSize()} voxels, more than {stored} stored bytes can hold")
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(path, f"cannot read ({_itk_message(exc)})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"expected a 3D scalar volume, got {image.GetDimension()}D with "
                               f"{image.GetNumberOfComponentsPerPixel()} component(s)")
    data = sitk.GetArrayFromImage(image)  # (Z, Y, X)
    if data.dtype.kind == "c":
        raise InputError(path, "complex-valued voxels are not supported")
    # (Z, Y, X) C-order is (X, Y, Z) F-order: a transposed view, as nibabel gives NIfTI data (a
    # transposing copy of a 512 x 512 x 400 CT alone took ~2 s)
    return data.astype(np.float32, copy=False).transpose(2, 1, 0), _itk_affine(image)


def _dicomdir_series(dicomdir: Path) -> dict[str, list[str]]:
    from pydicom.errors import InvalidDicomError
    from pydicom.fileset import FileSet

    try:
        fileset = FileSet(str(dicomdir))
        series: dict[str, list[str]] = {}
        for instance in fileset:
            if "SeriesInstanceUID" in instance and Path(instance.path).is_file():
                series.setdefault(str(instance.SeriesInstanceUID), []).append(str(instance.path))
    except (InvalidDicomError, ValueError, KeyError, AttributeError, OSError) as exc:
        raise InputError(dicomdir, f"unreadable DICOMDIR ({type(exc).__name__}: {exc})") from None
    return series


def _series_number(file: str) -> str:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    try:
        reader.ReadImageInformation()
        return reader.GetMetaData("0020|0011").strip() if reader.HasMetaDataKey("0020|0011") else "?"
    except RuntimeError:
        return "?"


def _check_dicom_slices(folder: Path, files: list[str]) -> list[str]:
    """``files`` in slice order, refusing a series whose slices do not form one regular volume:
    orientations that differ, duplicated positions, or a gap (a missing slice) -- GDCM would stack
    them silently."""
    import SimpleITK as sitk

    positions, orientations = [], []
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
            position = [float(v) for v in reader.GetMetaData("0020|0032").split("\\")]
            orientation = [float(v) for v in reader.GetMetaData("0020|0037").split("\\")]
        except (RuntimeError, ValueError):
            raise InputError(Path(name), "DICOM slice without a readable position/orientation "
                                         "(ImagePositionPatient, ImageOrientationPatient)") from None
        positions.append(position)
        orientations.append(orientation)
    orientations = np.asarray(orientations)
    if np.abs(orientations - orientations[0]).max() > 1e-4:
        raise InputError(folder, "the series' slices have inconsistent orientations (ImageOrientationPatient)")
    if len(files) < 2:
        return list(files)
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    order = np.argsort(np.asarray(positions) @ normal, kind="stable")
    depth = (np.asarray(positions) @ normal)[order]
    steps = np.diff(depth)
    step = np.median(steps)
    if step <= 1e-6 or np.any(steps <= 1e-6):
        raise InputError(folder, "two or more slices share a position: mixed or duplicated series")
    uneven = np.flatnonzero(np.abs(steps - step) > 0.01 * step + 1e-3)
    if uneven.size:
        k = int(uneven[0])
        raise InputError(folder, f"uneven slice positions (missing slices?): {steps[k]:.3g} mm between slices "
                                 f"{k} and {k + 1} where the series steps {step:.3g} mm")
    return [files[i] for i in order]


def _itk_data_files(path: Path) -> list[Path]:
    # detached headers (.nhdr, .mhd) name their data file; count it in the stored size
    if path.suffix.lower() not in (".nhdr", ".mhd"):
        return []
    key = "data file:" if path.suffix.lower() == ".nhdr" else "elementdatafile ="
    try:
        lines = path.read_text(errors="replace").splitlines()[:200]
    except OSError:
        return []
    found = [line.split(":" if ":" in key else "=", 1)[1].strip() for line in lines if line.lower().startswith(key)]
    return [path.parent / name for name in found if name and name.upper() not in ("LIST", "LOCAL")]


def _itk_message(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def read_volume(path: PathLike, *, series: str | None = None, allow_nonfinite: bool = False) -> Volume:
    """Read a 3D volume from any format medgap accepts, as a :class:`Volume` with a RAS affine.

    NIfTI (``.nii``, ``.nii.gz``) through :func:`read_nifti`; NRRD (``.nrrd``, ``.nhdr``),
    MetaImage (``.mha``, ``.mhd``) and DICOM series (a folder of slices; ``series`` picks one
    SeriesInstanceUID or series number when the folder holds several) through SimpleITK, with geometry from the
    files and DICOM rescale slope/intercept applied (CT in HU). Outputs are written as NIfTI.
    """
    path = Path(path)
    if is_nifti(path):
        return read_nifti(path, allow_nonfinite=allow_nonfinite)
    if not path.exists():
        raise InputError(path, "does not exist")
    if path.is_file() and path.name.upper() == "DICOMDIR":
        data, affine = _read_itk(path, series)
        return Volume(data, check_geometry(path, affine), None, path)
    if not (path.is_dir() or is_itk_file(path)):
        raise InputError(path, "unknown volume type: expected .nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd "
                               "or a folder of DICOM slices")
    if not path.is_dir() and not path.is_file():
        raise InputError(path, "is not a regular file")
    data, affine = _read_itk(path, series)
    _check_nonempty(data, path, "image")
    if not allow_nonfinite:
        check_finite(data, path, "image")
    return Volume(data, check_geometry(path, affine), None, path)


# --------------------------------------------------------------------------- npz helpers


# deflate cannot compress better than ~1032:1; a zip entry claiming more is lying
_MAX_DEFLATE_RATIO = 1100


def _npy_header(fh, path: Path, member: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape and dtype from an ``.npy`` stream's header, without reading the array."""
    try:
        version = np.lib.format.read_magic(fh)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(fh)
    except Exception as exc:
        raise InputError(path, f"{member}: not a valid .npy array header ({exc})") from None
    if dtype.hasobject:
        raise InputError(path, f"{member}: contains pickled objects, which medgap never loads")
    return tuple(int(s) for s in shape), bool(fortran), dtype


def _declared_nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    count = 1
    for s in shape:
        count *= s
    return count * dtype.itemsize


def read_npy(path: PathLike) -> np.ndarray:
    """Read a plain ``.npy`` array, refusing pickles and headers that declare more than the file holds."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file does not exist" if not path.exists() else "is not a regular file")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        shape, _, dtype = _npy_header(fh, path, path.name)
        need = fh.tell() + _declared_nbytes(shape, dtype)
    if size < need:
        raise InputError(path, f"truncated: the header declares shape {shape} ({need} bytes), the file has {size}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(path, f"cannot read as .npy ({exc})") from None


def load_npz_arrays(path: PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, checked before and while reading.

    Refused, naming the file: not a zip archive, truncated or CRC-damaged entries,
    pickled objects, and headers that declare more data than the entry holds (checked
    before anything of that size is allocated).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    if not path.is_file():
        raise InputError(path, "is not a regular file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        raise InputError(path, "not an .npz file (no zip archive found; truncated?)")
    try:
        arrays: dict[str, np.ndarray] = {}
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                key = info.filename.removesuffix(".npy")
                if key in arrays:  # numpy would silently take the last of two entries of one name
                    raise InputError(path, f"entry '{key}' appears twice in the archive")
                most = _MAX_DEFLATE_RATIO * max(info.compress_size, 1) + 4096
                if info.compress_type != zipfile.ZIP_STORED and info.file_size > most:
                    raise InputError(path, f"entry '{key}' claims {info.file_size} bytes from {info.compress_size}: "
                                           "an impossible compression ratio")
                with archive.open(info) as fh:
                    shape, fortran, dtype = _npy_header(fh, path, f"entry '{key}'")
                    nbytes = _declared_nbytes(shape, dtype)
                    if fh.tell() + nbytes > info.file_size:
                        raise InputError(path, f"entry '{key}' declares shape {shape} ({nbytes} bytes) but holds "
                                               f"{info.file_size - fh.tell()} bytes")
                    raw = fh.read(nbytes)
                    if len(raw) != nbytes:
                        raise InputError(path, f"entry '{key}' is truncated ({len(raw)} of {nbytes} bytes)")
                    flat = np.frombuffer(raw, dtype=dtype).copy() if nbytes else np.empty(0, dtype)
                    arrays[key] = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
                    if fh.read(1):  # reading to the end makes zipfile check the CRC
                        raise InputError(path, f"entry '{key}' has data after its array")
    except InputError:
        raise
    except MemoryError:
        raise InputError(path, "does not fit in memory") from None
    except (OSError, ValueError, EOFError, KeyError, RuntimeError, NotImplementedError,
            zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(path, f"cannot read as .npz: truncated or corrupt ({type(exc).__name__}: {exc})") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise InputError(path, f"missing key(s) {missing}; found {sorted(arrays)}")
    return arrays



def _optional_names(arrays: dict, key: str) -> list[str] | None:
    if key not in arrays:
        return None
    return [str(s) for s in np.asarray(arrays[key]).reshape(-1)]


_MAX_CLASSES = 100_000


def _check_labels(labels: np.ndarray, n: int, names: list[str] | None, path, key: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise InputError(path, f"'{key}' must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if key == "labels" and labels.ndim != 1:
        raise InputError(path, f"'{key}' must be one class index per sample (shape ({n},)), got shape {labels.shape}")
    if names is None and labels.size and labels.max() >= _MAX_CLASSES:
        raise InputError(path, f"'{key}' holds value {int(labels.max())}: class indices must run 0..K-1 "
                               f"(at most {_MAX_CLASSES:,} classes)")
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
    if wavelengths.size and wavelengths.min() < 0:
        raise InputError(path, f"'wavelengths' must not be negative (nm, or channel numbers), found {wavelengths.min():g}")
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
    arrays = load_npz_arrays(path, ("spectra", "wavelengths"))
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
