"""NRRD, MetaImage and DICOM series through SimpleITK, and :func:`read_volume` for every volume format."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medgap.errors import InputError
from medgap.io.nifti import Volume, check_geometry, is_nifti, read_nifti
from medgap.io.checks import _MAX_DEFLATE_RATIO, _check_nonempty, check_finite, check_input_size

PathLike = str | os.PathLike

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
        data_files = _checked_data_files(path, need * _pixel_bytes(reader.GetPixelID()))
        stored = sum(f.stat().st_size for f in {path, *data_files} if f.is_file())
        if need > _MAX_DEFLATE_RATIO * max(stored, 1) + (1 << 20):
            raise InputError(path, f"declares {reader.GetSize()} voxels, more than {stored} stored bytes can hold")
        check_input_size(path, need * _pixel_bytes(reader.GetPixelID()), stored, copies=2.0)
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


def _pixel_bytes(pixel_id: int) -> int:
    import SimpleITK as sitk

    sizes = {sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2, sitk.sitkUInt32: 4,
             sitk.sitkInt32: 4, sitk.sitkUInt64: 8, sitk.sitkInt64: 8, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8}
    return sizes.get(pixel_id, 8)


def _header_fields(path: Path) -> dict[str, str]:
    """``key -> value`` of a detached NRRD (``key: value``) or MetaImage (``Key = Value``) header."""
    sep = ":" if path.suffix.lower() == ".nhdr" else "="
    try:
        lines = path.read_text(errors="replace").splitlines()[:200]
    except OSError:
        return {}
    fields = {}
    for line in lines:
        if sep in line and not line.startswith("#"):
            key, value = line.split(sep, 1)
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _checked_data_files(path: Path, raw_bytes: int) -> list[Path]:
    """The data files a detached header (.nhdr, .mhd) names, refused when one lies outside the header's
    folder (a header must not read a file the user did not hand us) or, stored uncompressed, is not
    exactly the size the header declares."""
    if path.suffix.lower() not in (".nhdr", ".mhd"):
        return []
    fields = _header_fields(path)
    name = fields.get("data file" if path.suffix.lower() == ".nhdr" else "elementdatafile", "")
    if not name or name.split()[0].upper() in ("LIST", "LOCAL") or "%" in name:
        return []  # data in the header itself, or a file list ITK resolves (checked by ITK's reader)
    folder = path.resolve().parent
    data = (path.parent / name).resolve()
    if folder not in data.parents:
        raise InputError(path, f"its data file {name!r} lies outside the header's folder: refused")
    if not data.is_file():
        raise InputError(path, f"its data file {name!r} does not exist")
    if path.suffix.lower() == ".mhd":
        compressed = fields.get("compresseddata", "false").lower() == "true"
        skip = fields.get("headersize", "0")
    else:
        compressed = fields.get("encoding", "raw").lower() not in ("raw",)
        skip = fields.get("byte skip", fields.get("byteskip", "0"))
    if not compressed and skip.strip() == "0" and data.stat().st_size != raw_bytes:
        raise InputError(path, f"its data file {name!r} holds {data.stat().st_size} bytes where the header "
                               f"declares {raw_bytes}")
    return [data]


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
