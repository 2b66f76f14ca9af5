"""Checks shared by every reader: finite values, non-empty arrays, a ceiling on what a file may
expand to in memory, listing input folders."""

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


# deflate cannot compress better than ~1032:1; a stream claiming more is lying
_MAX_DEFLATE_RATIO = 1100
# Real images compress far less than deflate's limit (measured on the installed data: 1.0-26x for
# MR/CT, 98x for a binary brain mask); an input that claims more is refused unless the user says
# how large an input they expect.
MAX_INPUT_RATIO = 500
MAX_INPUT_ENV = "MEDGAP_MAX_INPUT_GB"


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_input_size(path: PathLike | None, expanded: int, stored: int, *, copies: float = 1.0) -> None:
    """Refuse an input that would expand to ``expanded`` bytes from ``stored`` bytes on disk before
    anything is allocated: more than ``MAX_INPUT_RATIO`` times its stored size (a decompression
    bomb), or (with the ``copies`` working arrays reading needs) more than half the memory
    available now. ``MEDGAP_MAX_INPUT_GB`` replaces both rules with an explicit ceiling."""
    gib = 1 << 30
    override = os.environ.get(MAX_INPUT_ENV)
    if override:
        try:
            ceiling = float(override) * gib
        except ValueError:
            raise InputError(None, f"{MAX_INPUT_ENV}={override!r} is not a number of GB") from None
        if expanded > ceiling:
            raise InputError(path, f"expands to {expanded / gib:.2f} GB, above {MAX_INPUT_ENV}={override}")
        return
    hint = f"(set {MAX_INPUT_ENV} to the largest input you expect, in GB, to read it anyway)"
    if stored > 0 and expanded > MAX_INPUT_RATIO * stored + (1 << 20):
        raise InputError(path, f"declares {expanded / gib:.2f} GB of data in {stored / 1e6:.2f} MB on disk, "
                               f"a compression ratio above {MAX_INPUT_RATIO}:1 that no real image reaches {hint}")
    available = _available_memory()
    need = expanded * copies
    if available is not None and need > available / 2:
        raise InputError(path, f"reading it needs about {need / gib:.1f} GB of memory, "
                               f"{available / gib:.1f} GB are available {hint}")

