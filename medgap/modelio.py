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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import medgap
from medgap.errors import ModelFolderError
from medgap.io import atomic_path

__all__ = ["save_model", "load_model", "SavedModel", "sha256_file", "state_to_tensors"]

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
        f"from medgap.modelio import load_model",
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
) -> Path:
    """Write a model folder atomically (a failure leaves any previous folder untouched)."""
    folder = Path(folder)
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
    with atomic_path(folder, is_dir=True) as tmp:
        for name, module in weights.items():
            if "/" in name or name.startswith("."):
                raise ValueError(f"bad weights name {name!r}")
            save_file(state_to_tensors(module), str(tmp / f"{name}.safetensors"), metadata={"method": method})
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        (tmp / CARD).write_text(card or _default_card(method, config_dict, trained_on), encoding="utf-8")
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        manifest = {name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size} for name in files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return folder


def verify_folder(folder: Path) -> dict[str, Any]:
    """Check the manifest; return the parsed config.json."""
    if not folder.is_dir():
        raise ModelFolderError(folder, "model folder does not exist")
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        raise ModelFolderError(folder, f"not a medgap model folder: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFolderError(manifest_path, f"unreadable manifest ({exc})") from exc
    for name, entry in manifest.items():
        path = folder / name
        if not path.exists():
            raise ModelFolderError(path, "listed in the manifest but missing")
        if path.stat().st_size != entry["bytes"]:
            raise ModelFolderError(path, f"size {path.stat().st_size} bytes, manifest says {entry['bytes']} (truncated?)")
        if sha256_file(path) != entry["sha256"]:
            raise ModelFolderError(path, "sha256 does not match the manifest: the file was altered or corrupted")
    try:
        return json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFolderError(folder / CONFIG, f"unreadable config ({exc})") from exc


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
    if meta.get("format", 1) > 1:
        raise ModelFolderError(folder, f"written in format {meta['format']} by medgap {meta.get('medgap_version')}; "
                               f"this medgap ({medgap.__version__}) reads format 1")
    weights = {}
    for name in meta.get("weights", []):
        path = folder / f"{name}.safetensors"
        try:
            weights[name] = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ModelFolderError(path, f"cannot read weights ({exc})") from exc
    info = {k: v for k, v in meta.items() if k not in ("config",)}
    return SavedModel(config=meta.get("config", {}), weights=weights, info=info, path=folder)
