"""Where a command may write: outputs never alias inputs, output folders are staged and never clobber.

Two rules every command follows (docs/guarantees.md):

- :func:`check_output_file` -- an output file is refused before any data is read when it is (by
  path, symbolic link or hard link) one of the command's inputs, lies inside an input folder, is a
  folder, or lacks the suffix that decides its format (a suffix is never added silently).
- :func:`staged_output_folder` -- a command that writes several files into ``--out DIR`` writes
  them into a hidden staging folder inside ``DIR`` and moves them into place only when all were
  written. ``DIR`` may hold the user's own files; a name the command would write that already
  exists is refused unless ``overwrite`` is given, and even then only entries an earlier medgap
  command wrote there (listed in ``DIR/.medgap-outputs.json``) are replaced -- never the user's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from medgap.errors import InputError
from medgap.io.atomic import atomic_write_text, current_umask, pid_alive, remove_path

__all__ = ["check_output_file", "check_not_inside_inputs", "staged_output_folder", "MANIFEST"]

MANIFEST = ".medgap-outputs.json"
PathLike = str | os.PathLike


def _existing(paths: Iterable[PathLike | None]) -> list[Path]:
    return [Path(p) for p in paths if p is not None and os.path.lexists(p)]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    """``path`` (resolved) is ``folder`` or lies somewhere under it."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def check_not_inside_inputs(out: PathLike, inputs: Iterable[PathLike | None]) -> None:
    """Refuse an output path that is an input, a link to one, or inside an input folder."""
    out = Path(out)
    for source in _existing(inputs):
        if source.is_dir():
            if _inside(out, source):
                raise InputError(out, f"lies inside the input folder {source}: medgap never writes into its "
                                      "inputs; choose an output outside it")
        elif out.resolve() == source.resolve() or (os.path.lexists(out) and _same_file(out, source)):
            raise InputError(out, f"is the input file {source} (same file): medgap never overwrites an input; "
                                  "choose another output name")


def check_output_file(out: PathLike, inputs: Iterable[PathLike | None] = (), *,
                      suffixes: tuple[str, ...] = ()) -> Path:
    """Check an output *file* before any work: not an input, not a folder, the right suffix.

    ``suffixes`` lists the accepted endings (``.nii.gz``, ``.npz``...); an output without one is
    refused instead of being renamed, so medgap never writes a file the user did not name.
    """
    out = Path(out)
    if suffixes and not any(out.name.lower().endswith(s) for s in suffixes):
        raise InputError(out, f"an output file must end in {' or '.join(suffixes)} (medgap never adds a suffix "
                              "to the name you give)")
    if out.is_dir():
        raise InputError(out, "is a folder: give the name of the output file")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(out, f"cannot be created: {parent} is a file, not a folder")
            break
    check_not_inside_inputs(out, inputs)
    return out


def _read_manifest(folder: Path) -> set[str]:
    path = folder / MANIFEST
    if not path.is_file():
        return set()
    try:
        names = json.loads(path.read_text(encoding="utf-8")).get("entries", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {n for n in names if isinstance(n, str) and n and "/" not in n and n not in (".", "..")}


def _check_folder(out: Path, inputs: Iterable[PathLike | None], overwrite: bool, names: Iterable[str]) -> set[str]:
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder: choose another output folder")
    check_not_inside_inputs(out, inputs)
    earlier = _read_manifest(out) if out.is_dir() else set()
    present = sorted(n for n in earlier if os.path.lexists(out / n))
    if present and not overwrite:
        shown = ", ".join(present[:4]) + (f" and {len(present) - 4} more" if len(present) > 4 else "")
        raise InputError(out, f"holds the outputs of an earlier medgap run ({shown}): pass --overwrite "
                              "(Python: overwrite=True) to replace them, or choose another folder")
    foreign = [n for n in names if os.path.lexists(out / n) and n not in earlier]
    if foreign:
        raise InputError(out / foreign[0], "exists and was not written by medgap: it is never replaced; "
                                           "choose another output folder")
    return earlier


def _remove_stale_staging(out: Path) -> None:
    """Staging folders of medgap processes that no longer exist (killed with SIGKILL)."""
    for entry in out.glob(".medgap-staging-*"):
        pid = entry.name.split("-")[2].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def staged_output_folder(out: PathLike, *, inputs: Iterable[PathLike | None] = (), overwrite: bool = False,
                         names: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a hidden staging folder inside ``out``; move what was written there into ``out`` at the end.

    Refused before any work (see the module text): ``out`` is a file, an input or inside an input
    folder, holds an earlier run's outputs without ``overwrite``, or holds a user's file under one of
    ``names`` (the entries the command knows it will write). At the end, before
    anything moves, every name written is checked against ``out``: a name that exists there and
    that no earlier medgap command wrote (the user's own file) is refused and nothing moves. On any
    error the staging folder is removed, and ``out`` too when this call created it and it is empty.
    """
    out = Path(out)
    inputs = list(inputs)
    earlier = _check_folder(out, inputs, overwrite, names)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(out, f"cannot create the output folder ({exc.strerror})") from None
    _remove_stale_staging(out)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".medgap-staging-{os.getpid()}.", dir=out))
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise InputError(out, f"cannot write into the output folder ({exc.strerror})") from None
    try:
        os.chmod(staging, 0o777 & ~current_umask())
        yield staging
        written = sorted(p.name for p in staging.iterdir())
        foreign = [n for n in written if os.path.lexists(out / n) and n not in earlier]
        if foreign:
            raise InputError(out / foreign[0], "exists and was not written by medgap: it is never replaced; "
                                               "choose another output folder")
        for name in written:
            if os.path.lexists(out / name):
                remove_path(out / name)  # an earlier run's output, replaced with --overwrite
            os.replace(staging / name, out / name)
        manifest = sorted((earlier & {n for n in earlier if os.path.lexists(out / n)}) | set(written))
        _write_manifest(out, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)


def _write_manifest(out: Path, entries: list[str]) -> None:
    atomic_write_text(out / MANIFEST, json.dumps({"written_by": "medgap", "entries": entries}, indent=2))


def _finite(obj):
    """``obj`` with every NaN/Inf float replaced by None (JSON has no NaN), numpy scalars as Python ones."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def json_text(obj, indent: int | None = None, default=None) -> str:
    """Valid JSON always: NaN and infinities become null (``json.dumps`` would write bare ``NaN``)."""
    return json.dumps(_finite(obj), indent=indent, default=default, allow_nan=False)
