"""Checks shared by every reader: finite values, non-empty arrays, listing input folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from medgap.errors import InputError

PathLike = str | os.PathLike

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



# deflate cannot compress better than ~1032:1; a stream claiming more is lying
_MAX_DEFLATE_RATIO = 1100
