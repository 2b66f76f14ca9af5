"""Error classes: every message names the file (or config field) and the problem."""

from __future__ import annotations

from pathlib import Path

__all__ = ["MedgapError", "InputError", "ModelFolderError", "ConfigError", "TrainingDivergedError"]


class MedgapError(Exception):
    """Base class of every error medgap raises on purpose."""


class InputError(MedgapError, ValueError):
    """A user-supplied file or array is unusable. ``str(err)`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = str(path) if path is not None else "<array>"
        super().__init__(f"{where}: {problem}")


class ModelFolderError(InputError):
    """A model folder is missing files, was tampered with, or belongs to another method."""


class ConfigError(MedgapError, ValueError):
    """A configuration value is invalid. ``str(err)`` names the field."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"config field '{field}': {problem}")


class TrainingDivergedError(MedgapError, FloatingPointError):
    """Training produced a non-finite loss or weight: nothing is saved. ``str(err)`` says which setting to lower."""
