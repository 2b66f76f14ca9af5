"""Atomic writes: every output goes to a temporary name in the target folder and is renamed
onto the target only once complete; temporaries a killed process left are removed later."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from medgap.errors import InputError

PathLike = str | os.PathLike

# --------------------------------------------------------------------------- atomic writes

# Temporary names carry the host and process that made them, so a later write to the same
# target can remove what a killed process (SIGKILL, power loss) left behind -- and only that.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def current_umask() -> int:
    # os.umask can only be read by setting it; set it straight back (no threads write files here).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}-"


def pid_alive(pid: int) -> bool:
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
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            remove_path(entry)
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
        umask = current_umask()
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
            remove_path(old)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        remove_path(tmp)
        if exc.filename is None or str(tmp) in str(exc.filename):  # our temporary: name the user's output
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    except BaseException:
        remove_path(tmp)
        raise


def remove_path(p: Path) -> None:
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
