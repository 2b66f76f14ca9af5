"""``.npy``/``.npz`` arrays read without pickle, checked against what their headers declare."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from medgap.errors import InputError
from medgap.io.checks import _MAX_DEFLATE_RATIO, check_finite, check_input_size

PathLike = str | os.PathLike

# --------------------------------------------------------------------------- npz helpers




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
            check_input_size(path, sum(info.file_size for info in archive.infolist()), path.stat().st_size,
                             copies=2.0)
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
