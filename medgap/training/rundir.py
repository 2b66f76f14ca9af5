"""The folder a training keeps its checkpoints and logs in, and the rules for resuming it.

Beside every model folder ``OUT`` a trainer keeps a run folder ``OUT.run``
(:mod:`medgap.training.contract`) holding ``run.json``: the method, the settings that define the run and a
fingerprint of the training data. A rerun into the same ``--out``

* resumes only when method, settings and data are the same as recorded (the number
  of steps/epochs may grow, so an interrupted or finished run can be extended);
* otherwise stops with an error saying what differs and how to start fresh
  (``--no-resume`` discards that run's checkpoints; nothing else is ever deleted);
* refuses a run folder medgap did not write (no ``run.json``) and anything that is not a
  folder;
* refuses to start while another training holds the folder's lock (``fcntl.flock``, released
  by the kernel when a process dies, so a killed run never leaves a stale lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from medgap.errors import InputError
from medgap.io import atomic_write_text

__all__ = ["RunFolder", "fingerprint_arrays", "check_run_folder", "without"]

RUN_FILE = "run.json"
LOCK_FILE = "lock"


def fingerprint_arrays(arrays: Iterable[np.ndarray | torch.Tensor | None]) -> str:
    """sha256 over the shapes, dtypes and bytes of ``arrays`` (None entries count as absent)."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        a = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(memoryview(a.reshape(-1).view(np.uint8)))
    return digest.hexdigest()


def without(settings: dict, *dotted: str) -> dict:
    """A deep copy of ``settings`` without the dotted keys (``"train.steps"``)."""
    out = json.loads(json.dumps(settings))
    for key in dotted:
        parts = key.split(".")
        target = out
        for part in parts[:-1]:
            target = target.get(part, {}) if isinstance(target, dict) else {}
        if isinstance(target, dict):
            target.pop(parts[-1], None)
    return out


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix[:-1]} ({old!r} -> {new!r})"]


def check_run_folder(path: str | Path, prepared: Iterable[str] = ()) -> None:
    """Raise unless ``path`` is absent, an empty folder, or a run folder medgap wrote.

    ``prepared`` names entries a trainer writes before the run starts (a data cache).
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise InputError(path, "medgap keeps its training checkpoints here, but this is not a folder: "
                               "move it or choose another --out")
    if any(p.name not in prepared for p in path.iterdir()) and not (path / RUN_FILE).is_file():
        raise InputError(path, "medgap keeps its training checkpoints here, but this folder was not written by "
                               "a medgap training (no run.json): move it or choose another --out")


class RunFolder:
    """Own a training's run folder for the duration of the run (a context manager).

    Args:
        path: the run folder.
        method: ``harmonize``, ``transfer`` or ``synthesize``.
        settings: the configuration values that define the run (what may change on a
            resume, such as the step count, left out by the caller).
        data: :func:`fingerprint_arrays` of the training data.
        resume: False discards an earlier run's checkpoints instead of resuming them.
        is_main: only the main process writes, locks and deletes; every process checks.
        clear: glob patterns of the entries inside ``path`` a fresh start removes.
        prepared: entries written before the run starts (see :func:`check_run_folder`).
        barrier: the process group's barrier (``DistContext.barrier``) under torchrun.
        upgrade: brings settings recorded by an earlier version to the current keys
            (``MedgapConfig.upgrade_keys``), so renamed keys alone do not block a resume.
    """

    def __init__(self, path: str | Path, method: str, settings: dict, data: str, *, resume: bool = True,
                 is_main: bool = True, clear: Iterable[str] = (), prepared: Iterable[str] = (),
                 barrier: Callable[[], None] = lambda: None, upgrade: Callable[[dict], dict] | None = None):
        self.path = Path(path)
        self.record = {"method": method, "settings": json.loads(json.dumps(settings)), "data_sha256": data}
        self.resume = resume
        self.is_main = is_main
        self.clear = list(clear)
        self.prepared = tuple(prepared)
        self.barrier = barrier
        self.upgrade = upgrade
        self._lock_fh = None
        self.resumable = False

    def __enter__(self) -> "RunFolder":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> "RunFolder":
        """Check the folder, take the lock, clear an earlier run when not resuming, record this run."""
        check_run_folder(self.path, self.prepared)
        previous = self._previous()
        if previous is not None and self.upgrade is not None and isinstance(previous.get("settings"), dict):
            previous = {**previous, "settings": json.loads(json.dumps(self.upgrade(previous["settings"])))}
        if previous is not None and previous != self.record and self.resume:
            changed = _differences(previous.get("settings"), self.record["settings"])
            if previous.get("data_sha256") != self.record["data_sha256"]:
                changed.append("the training data")
            if previous.get("method") != self.record["method"]:
                changed.insert(0, f"method ({previous.get('method')!r} -> {self.record['method']!r})")
            raise InputError(self.path, "holds checkpoints of another run (changed: " + "; ".join(changed[:6])
                             + "). Pass --no-resume to discard them and start fresh, or choose another --out")
        self.resumable = previous is not None and self.resume
        self.barrier()  # every process has read the old record before the main one replaces it
        if self.is_main:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock()
            if previous is not None and not self.resume:
                # the run's entries, and the hidden temporaries a killed process left of them (we hold
                # the lock: no other process is writing here)
                patterns = [*self.clear, *(f".{p}.*.tmp*" for p in self.clear), *(f".{p}.*.old" for p in self.clear)]
                for pattern in patterns:
                    for target in self.path.glob(pattern):
                        if target.is_dir() and not target.is_symlink():
                            shutil.rmtree(target)
                        else:
                            target.unlink()
            atomic_write_text(self.path / RUN_FILE, json.dumps(self.record, indent=2))
        self.barrier()
        return self

    def close(self) -> None:
        """Release the lock."""
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def _previous(self) -> dict | None:
        run_file = self.path / RUN_FILE
        if not run_file.is_file():
            return None
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            previous, problem = None, f"unreadable run record ({exc})"
        else:
            problem = None if isinstance(previous, dict) else "run record is not a JSON object"
        if problem is None:
            return previous
        if self.resume:
            raise InputError(run_file, f"{problem}: pass --no-resume to start fresh")
        return {}  # still medgap's run folder: a fresh start clears it

    def _lock(self) -> None:
        fh = open(self.path / LOCK_FILE, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise InputError(self.path, f"another training is writing here ({holder}); wait for it to finish "
                                        "or choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        self._lock_fh = fh
