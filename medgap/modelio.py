"""Trained models as shareable folders: config + safetensors weights + card + sha256 manifest.

A model folder looks like::

    my-model/
      config.json          method, medgap version, typed config, what it was trained on
      <name>.safetensors   one file per weights entry (e.g. flow.safetensors)
      README.md            model card
      manifest.json        sha256 and size of every file above

Loading checks the manifest first, so a truncated or altered file is refused before
any tensor is read. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import medgap
from medgap.errors import InputError, ModelFolderError, TrainingDivergedError
from medgap.io import atomic_path

__all__ = ["save_model", "load_model", "SavedModel", "sha256_file", "state_to_tensors", "write_safetensors",
           "check_output_folder", "load_weights_into", "verify_folder"]

_MAX_JSON_BYTES = 16 << 20
CONFIG = "config.json"
MANIFEST = "manifest.json"
CARD = "README.md"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def state_to_tensors(weights: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A module's state dict (or a tensor mapping) as contiguous CPU tensors safetensors accepts."""
    state = weights.state_dict() if isinstance(weights, torch.nn.Module) else dict(weights)
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value)
        # clone() breaks shared storage, which safetensors refuses.
        out[key] = value.detach().to("cpu").contiguous().clone()
    return out


def write_safetensors(state: Mapping[str, torch.Tensor], path: Path, shown: Path, metadata: dict | None = None) -> None:
    """``save_file`` whose failures (disk full, read-only) are an OSError naming ``shown``, not the temporary."""
    try:
        save_file(dict(state), str(path), metadata=metadata)
    except SafetensorError as exc:
        raise OSError(None, f"cannot write weights ({exc})", str(shown)) from None


def _non_finite(state: Mapping[str, torch.Tensor]) -> int:
    """How many NaN/Inf values the floating-point tensors of ``state`` hold."""
    return sum(int((~torch.isfinite(t)).sum()) for t in state.values() if t.is_floating_point())


@dataclass
class SavedModel:
    """What :func:`load_model` returns."""

    config: dict[str, Any]
    weights: dict[str, dict[str, torch.Tensor]]
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def _default_card(method: str, config: dict, trained_on: dict) -> str:
    lines = [
        f"# medgap {method} model",
        "",
        f"Saved by medgap {medgap.__version__} on {datetime.now(timezone.utc).date().isoformat()}.",
        "",
        "Load it with:",
        "",
        "```python",
        "from medgap.modelio import load_model",
        f"saved = load_model('path/to/this/folder', method='{method}')",
        "```",
        "",
        "## Trained on",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in trained_on.items()] or ["- (not recorded)"]
    lines += ["", "## Configuration", "", "```json", json.dumps(config, indent=2), "```", ""]
    return "\n".join(lines)


def save_model(
    folder: str | Path,
    *,
    method: str,
    config: Any,
    weights: Mapping[str, torch.nn.Module | Mapping[str, torch.Tensor]],
    trained_on: dict[str, Any] | None = None,
    card: str = "",
    extras: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model folder atomically (a failure leaves any previous folder untouched).

    An existing folder is replaced only when it is an empty folder or, with ``overwrite``,
    a model folder of the same method (see :func:`check_output_folder`).
    """
    folder = Path(folder)
    check_output_folder(folder, method, overwrite=overwrite)
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    trained_on = dict(trained_on or {})
    meta = {
        "method": method,
        "medgap_version": medgap.__version__,
        "format": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config_dict,
        "trained_on": trained_on,
        "extras": dict(extras or {}),
        "weights": sorted(weights),
    }
    tensors = {name: state_to_tensors(module) for name, module in weights.items()}
    for name, state in tensors.items():
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad weights name {name!r}")
        bad = _non_finite(state)
        if bad:  # a diverged training never becomes a model folder
            raise TrainingDivergedError(f"{folder}: not saved: {bad} non-finite value(s) in '{name}' weights; the "
                                        "training diverged -- lower the learning rate (--set ...lr=) and train again")
    with atomic_path(folder, is_dir=True) as tmp:
        for name, state in tensors.items():
            write_safetensors(state, tmp / f"{name}.safetensors", folder, metadata={"method": method})
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        (tmp / CARD).write_text(card or _default_card(method, config_dict, trained_on), encoding="utf-8")
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        manifest = {name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size} for name in files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return folder


def _member(folder: Path, name: Any, what: str) -> Path:
    """``folder/name`` if ``name`` is a plain file name of a regular file directly inside ``folder``.

    A model folder never reads outside itself: no paths, no ``..``, no symbolic links,
    no devices or pipes (``/dev/zero`` would hash forever).
    """
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ModelFolderError(folder, f"{what} names {name!r}, which is not a file name inside the folder")
    path = folder / name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise ModelFolderError(path, f"{what}, but the file is missing") from None
    except OSError as exc:
        raise ModelFolderError(path, f"cannot be opened ({exc})") from None
    if stat.S_ISLNK(info.st_mode):
        raise ModelFolderError(path, "is a symbolic link; a model folder holds only its own regular files")
    if not stat.S_ISREG(info.st_mode):
        raise ModelFolderError(path, "is not a regular file")
    return path


def _read_json(path: Path, kind: type, what: str) -> Any:
    if path.stat().st_size > _MAX_JSON_BYTES:
        raise ModelFolderError(path, f"{what} is larger than {_MAX_JSON_BYTES} bytes")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFolderError(path, f"unreadable {what} ({type(exc).__name__}: {exc})") from None
    if not isinstance(value, kind):
        raise ModelFolderError(path, f"{what} must be a JSON {kind.__name__ if kind is not dict else 'object'}, "
                                     f"got {type(value).__name__}")
    return value


def folder_method(folder: Path) -> str | None:
    """The method recorded in a folder's config.json, or None when it is not a model folder."""
    try:
        return verify_folder(Path(folder), check_hashes=False).get("method")
    except ModelFolderError:
        return None


def verify_folder(folder: Path, *, check_hashes: bool = True) -> dict[str, Any]:
    """Check the manifest (names, sizes, sha256) and config.json; return the parsed config.json."""
    if not folder.is_dir():
        raise ModelFolderError(folder, "model folder does not exist")
    if not (folder / MANIFEST).exists() and not (folder / MANIFEST).is_symlink():
        raise ModelFolderError(folder, f"not a medgap model folder: {MANIFEST} is missing")
    manifest = _read_json(_member(folder, MANIFEST, "the model folder"), dict, "manifest")
    if CONFIG not in manifest:
        raise ModelFolderError(folder / MANIFEST, f"does not list {CONFIG}")
    for name, entry in manifest.items():
        path = _member(folder, name, "the manifest")
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not isinstance(entry.get("bytes"), int) or isinstance(entry.get("bytes"), bool)):
            raise ModelFolderError(folder / MANIFEST, f"entry {name!r} must be {{\"sha256\": str, \"bytes\": int}}")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise ModelFolderError(path, f"size {size} bytes, manifest says {entry['bytes']} (truncated?)")
        if check_hashes and sha256_file(path) != entry["sha256"]:
            raise ModelFolderError(path, "sha256 does not match the manifest: the file was altered or corrupted")
    meta = _read_json(folder / CONFIG, dict, CONFIG)
    for key, kind in (("method", str), ("config", dict), ("extras", dict), ("trained_on", dict), ("weights", list)):
        if key in meta and not isinstance(meta[key], kind):
            raise ModelFolderError(folder / CONFIG,
                                   f"'{key}' must be a JSON {kind.__name__}, got {type(meta[key]).__name__}")
    for name in meta.get("weights", []):
        if not isinstance(name, str) or f"{name}.safetensors" not in manifest:
            raise ModelFolderError(folder / CONFIG, f"weights entry {name!r} is not a file listed in the manifest")
        _member(folder, f"{name}.safetensors", "config.json's weights")
    return meta


def check_output_folder(folder: str | Path, method: str, *, overwrite: bool = False) -> None:
    """Refuse to write a ``method`` model folder where it would replace anything medgap did not write.

    Accepted: a path that does not exist, an empty folder, or (only with ``overwrite``) a
    model folder of the same method holding nothing but its own files.
    """
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise InputError(folder, "exists and is not a folder: choose another output folder")
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return
    found = folder_method(folder)
    if found is None:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise InputError(folder, f"exists and is not a medgap model folder (it holds {len(entries)} entries: {shown}); "
                                 "medgap never replaces a folder it did not write: choose another output folder")
    if found != method:
        raise InputError(folder, f"is a medgap '{found}' model folder, not a '{method}' one: "
                                 "choose another output folder")
    manifest = _read_json(folder / MANIFEST, dict, "manifest")
    foreign = [name for name in entries if name not in manifest and name != MANIFEST]
    if foreign:
        raise InputError(folder, f"is a '{method}' model folder that also holds files medgap did not write "
                                 f"({', '.join(foreign[:3])}): move them or choose another output folder")
    if not overwrite:
        raise InputError(folder, f"already holds a trained '{method}' model: pass --overwrite to replace it, "
                                 "or choose another output folder")


def load_weights_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """``module.load_state_dict(state)``, with a mismatch reported as a bad model folder."""
    expected = module.state_dict()
    problems = [f"'{k}' is missing" for k in expected if k not in state]
    problems += [f"'{k}' is not part of the model" for k in state if k not in expected]
    problems += [f"'{k}' has shape {tuple(v.shape)}, the configuration needs {tuple(expected[k].shape)}"
                 for k, v in state.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    problems += [f"'{k}' is not finite" for k, v in state.items()
                 if torch.is_floating_point(v) and not bool(torch.isfinite(v).all())]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ModelFolderError(path, f"weights do not fit the configuration: weight {problems[0]}{more}")
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()
        raise ModelFolderError(path, "weights do not fit the configuration in config.json "
                                     f"({first[-1].strip() if first else type(exc).__name__})") from None


def load_model(folder: str | Path, *, method: str | None) -> SavedModel:
    """Load a model folder written by :func:`save_model`.

    Args:
        folder: the model folder.
        method: the method that must have written it (``None`` accepts any).

    Raises:
        ModelFolderError: missing files, checksum mismatch, another method's folder,
            or a folder from a newer incompatible format.
    """
    folder = Path(folder)
    meta = verify_folder(folder)
    if method is not None and meta.get("method") != method:
        raise ModelFolderError(
            folder, f"this is a '{meta.get('method')}' model folder, expected a '{method}' one"
        )
    if not isinstance(meta.get("format", 1), int) or meta.get("format", 1) > 1:
        raise ModelFolderError(folder, f"written in format {meta['format']} by medgap {meta.get('medgap_version')}; "
                               f"this medgap ({medgap.__version__}) reads format 1")
    weights = {}
    for name in meta.get("weights", []):
        path = folder / f"{name}.safetensors"
        try:
            weights[name] = load_file(str(path))
        except (SafetensorError, OSError, ValueError, MemoryError) as exc:
            raise ModelFolderError(path, f"cannot read weights ({type(exc).__name__}: {exc})") from None
        bad = _non_finite(weights[name])
        if bad:
            raise ModelFolderError(path, f"{bad} weight value(s) are NaN or infinite: the model cannot be used")
    info = {k: v for k, v in meta.items() if k not in ("config",)}
    return SavedModel(config=meta.get("config", {}), weights=weights, info=info, path=folder)
