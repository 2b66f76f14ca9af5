"""Helpers for tests that tamper with model folders."""

from __future__ import annotations

import json
from pathlib import Path

from medgap.modelio import sha256_file


def rewrite_manifest(folder: Path) -> None:
    """Make manifest.json match the folder's files again, so an edit reaches the checks behind the checksums."""
    manifest = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                for p in sorted(folder.iterdir()) if p.is_file() and p.name != "manifest.json"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
