"""Helpers for tests that tamper with files: model folders, NIfTI headers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import nibabel as nib

from medgap.modelio import sha256_file


def rewrite_manifest(folder: Path) -> None:
    """Make manifest.json match the folder's files again, so an edit reaches the checks behind the checksums."""
    manifest = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                for p in sorted(folder.iterdir()) if p.is_file() and p.name != "manifest.json"}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def edit_nifti_header(path: Path, **fields) -> Path:
    """Set raw header fields of an uncompressed .nii in place (nibabel's save would recompute them)."""
    raw = bytearray(path.read_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw[:348])), check=False)
    for key, value in fields.items():
        header[key] = value
    raw[:348] = header.binaryblock
    path.write_bytes(bytes(raw))
    return path
