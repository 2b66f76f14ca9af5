"""Seeded fuzzing of every file medgap reads: each mutant is read cleanly or refused with medgap's own error.

Mutants of small valid NIfTI (.nii, .nii.gz), spectra .npz and model folders: byte flips,
truncation, header field edits, manifest/config edits. The default run takes a fast subset;
``pytest -m slow`` runs the full set (>= 1000 mutants).
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medgap.errors import MedgapError
from medgap.io import SpectraSet, read_nifti, read_spectra, write_spectra
from medgap.modelio import load_model, save_model

from folder_helpers import rewrite_manifest

SECONDS_PER_CASE = 10
FULL = {"nifti": 400, "nifti_gz": 300, "npz": 300, "model": 200}
FAST = {key: n // 10 for key, n in FULL.items()}

_NIFTI_FIELDS = ["dim", "datatype", "bitpix", "vox_offset", "pixdim", "scl_slope", "scl_inter", "qform_code",
                 "sform_code", "quatern_b", "quatern_c", "srow_x", "srow_y", "srow_z", "sizeof_hdr", "magic"]
_EXTREMES = [0, -1, 1, 2, 7, 8, 255, 32767, -32768, 1e30, -1e30, np.nan, np.inf, 1e-30]


def _flip(raw: bytes, rng: np.random.Generator, start: int = 0) -> bytes:
    out = bytearray(raw)
    for _ in range(int(rng.integers(1, 5))):
        i = int(rng.integers(start, len(out)))
        out[i] ^= int(rng.integers(1, 256))
    return bytes(out)


def _truncate(raw: bytes, rng: np.random.Generator) -> bytes:
    return raw[: int(rng.integers(0, len(raw)))]


def _edit_nifti_header(raw: bytes, rng: np.random.Generator) -> bytes:
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw[:348]), check=False)
    field = _NIFTI_FIELDS[int(rng.integers(len(_NIFTI_FIELDS)))]
    value = _EXTREMES[int(rng.integers(len(_EXTREMES)))]
    current = np.asarray(header[field])
    try:
        if field == "magic":
            header[field] = [b"n+1", b"ni1", b"xyz", b""][int(rng.integers(4))]
        elif current.ndim:
            arr = current.copy()
            arr[int(rng.integers(arr.size))] = np.asarray(value).astype(arr.dtype) if np.isfinite(value) or \
                arr.dtype.kind == "f" else 0
            header[field] = arr
        else:
            header[field] = np.asarray(value).astype(current.dtype) if np.isfinite(value) or \
                current.dtype.kind == "f" else 0
    except (ValueError, OverflowError, TypeError):
        pass
    return header.binaryblock + raw[348:]


def nifti_mutants(n: int, seed: int, gz: bool):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(6, 5, 4)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([1.0, 1.2, 2.0, 1.0]))
    raw = img.to_bytes()
    for k in range(n):
        kind = ["flip", "truncate", "header", "header"][k % 4]
        mutant = (_flip(raw, rng) if kind == "flip" else _truncate(raw, rng) if kind == "truncate"
                  else _edit_nifti_header(raw, rng))
        if gz:
            packed = gzip.compress(mutant, mtime=0)
            # mutate the compressed stream too: a gzip CRC protects the data nibabel never checks
            if kind == "flip" and k % 8 == 0:
                packed = _flip(gzip.compress(raw, mtime=0), rng, start=10)
            elif kind == "truncate" and k % 8 == 1:
                packed = _truncate(gzip.compress(raw, mtime=0), rng)
            mutant = packed
        yield f"{kind}-{k}", mutant


def npz_mutants(n: int, seed: int, path: Path):
    rng = np.random.default_rng(seed)
    write_spectra(path, SpectraSet(rng.random((30, 6)).astype(np.float32), np.linspace(500, 600, 6),
                                   rng.integers(0, 3, 30), ["a", "b", "c"], np.arange(30) % 5))
    raw = path.read_bytes()
    npy = io.BytesIO()
    for k in range(n):
        kind = ["flip", "truncate", "shape"][k % 3]
        if kind == "shape":
            # a stored (uncompressed) archive whose array header declares another shape or dtype
            shape = [(30, 6), (10**6, 10**6), (0, 6), (30,), (-1, 6), (30, 6, 2), (2**62, 2)][int(rng.integers(7))]
            descr = ["<f4", "<f8", "|O", "<c8", "|V0", "<U3", ">f4"][int(rng.integers(7))]
            npy.seek(0)
            npy.truncate()
            try:
                np.lib.format.write_array_header_1_0(npy, {"descr": descr, "fortran_order": bool(k % 2),
                                                           "shape": shape})
            except ValueError:
                pass
            body = npy.getvalue() + rng.bytes(int(rng.integers(0, 900)))
            buf = io.BytesIO()
            import zipfile

            with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
                archive.writestr("spectra.npy", body)
                wl = io.BytesIO()
                np.save(wl, np.linspace(500, 600, 6))
                archive.writestr("wavelengths.npy", wl.getvalue())
            mutant = buf.getvalue()
        else:
            mutant = _flip(raw, rng) if kind == "flip" else _truncate(raw, rng)
        yield f"{kind}-{k}", mutant


def _json_edit(value, rng: np.random.Generator):
    """A random structural edit of a JSON value: drop, retype or replace one entry somewhere."""
    replacements = [None, [], {}, "x", -1, 1e308, "../../etc/passwd", "/dev/zero", [1, 2], {"a": 1}, True]
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = list(value)[int(rng.integers(len(value)))]
        if rng.random() < 0.3:
            return {k: v for k, v in value.items() if k != key}
        return {**value, key: _json_edit(value[key], rng)}
    if isinstance(value, list) and value and rng.random() < 0.7:
        i = int(rng.integers(len(value)))
        return value[:i] + [_json_edit(value[i], rng)] + value[i + 1:]
    return replacements[int(rng.integers(len(replacements)))]


def model_mutants(n: int, seed: int, base: Path):
    """Yield (name, folder) after mutating a copy of a valid model folder in place."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    original = save_model(base / "original", method="transfer", config={"hidden": 4, "lr": 0.1},
                          weights={"generator": torch.nn.Linear(3, 4), "stats": {"mean": torch.zeros(3)}})
    files = sorted(p.name for p in original.iterdir())
    for k in range(n):
        folder = base / f"m{k}"
        shutil.copytree(original, folder)
        kind = ["flip", "truncate", "manifest", "config", "weights"][k % 5]
        target = folder / files[int(rng.integers(len(files)))]
        if kind == "flip":
            target.write_bytes(_flip(target.read_bytes(), rng))
        elif kind == "truncate":
            target.write_bytes(_truncate(target.read_bytes(), rng))
        elif kind == "manifest":
            manifest = json.loads((folder / "manifest.json").read_text())
            (folder / "manifest.json").write_text(json.dumps(_json_edit(manifest, rng)))
        elif kind == "config":
            meta = json.loads((folder / "config.json").read_text())
            (folder / "config.json").write_text(json.dumps(_json_edit(meta, rng)))
            if rng.random() < 0.8:
                rewrite_manifest(folder)  # so that the edit reaches the checks after the checksums
        else:
            weights = folder / "generator.safetensors"
            raw = weights.read_bytes()
            weights.write_bytes(_flip(raw[:120], rng) + raw[120:] if rng.random() < 0.7 else _truncate(raw, rng))
            rewrite_manifest(folder)
        yield f"{kind}-{k}", folder


def _check(read, name: str, failures: list) -> None:
    start = time.perf_counter()
    try:
        read()
    except MedgapError:
        pass
    except Exception as exc:  # anything else is a traceback a user would see
        failures.append(f"{name}: {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - start
    if seconds > SECONDS_PER_CASE:
        failures.append(f"{name}: took {seconds:.1f} s")


def _run(kind: str, n: int, tmp_path: Path) -> int:
    failures: list[str] = []
    count = 0
    if kind in ("nifti", "nifti_gz"):
        path = tmp_path / ("m.nii.gz" if kind == "nifti_gz" else "m.nii")
        for name, blob in nifti_mutants(n, 1, gz=kind == "nifti_gz"):
            path.write_bytes(blob)
            _check(lambda: read_nifti(path), f"{kind} {name}", failures)
            count += 1
    elif kind == "npz":
        path = tmp_path / "m.npz"
        for name, blob in npz_mutants(n, 2, tmp_path / "original.npz"):
            path.write_bytes(blob)
            _check(lambda: read_spectra(path), f"npz {name}", failures)
            count += 1
    else:
        for name, folder in model_mutants(n, 3, tmp_path):
            _check(lambda: load_model(folder, method="transfer"), f"model {name}", failures)
            shutil.rmtree(folder)
            count += 1
    assert not failures, "\n".join(failures[:20])
    return count


@pytest.mark.parametrize("kind", sorted(FAST))
def test_fuzz_fast_subset(kind, tmp_path):
    assert _run(kind, FAST[kind], tmp_path) == FAST[kind]


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(FULL))
def test_fuzz_full(kind, tmp_path):
    assert _run(kind, FULL[kind], tmp_path) == FULL[kind]


def test_full_set_has_at_least_1000_mutants():
    assert sum(FULL.values()) >= 1000
