"""Typed configurations with named presets, loadable from JSON/YAML and overridable.

Each method subclasses :class:`MedgapConfig` with typed fields and a ``presets``
class attribute mapping a preset name (``cpu-small``, ``paper``) to field values.
Every value is checked by pydantic when the config is built; a bad value raises
:class:`~medgap.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from medgap.errors import ConfigError, InputError

__all__ = ["MedgapConfig", "parse_overrides"]

C = TypeVar("C", bound="MedgapConfig")


def _deep_update(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=true"]`` into ``{"a": {"b": 1}, "c": True}`` (values parsed as YAML)."""
    result: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, "override must look like key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(item, "override has an empty key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


def _raise_config_error(exc: ValidationError) -> None:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "<root>"
    if err["type"] == "extra_forbidden":
        raise ConfigError(field, "unknown field") from None
    raise ConfigError(field, f"{err['msg']} (got {err.get('input')!r})") from None


class MedgapConfig(BaseModel):
    """Base of every method's configuration."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)

    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def load_json(cls: type[C], values: dict[str, Any]) -> C:
        """Build from a plain dict (e.g. a model folder's config.json)."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            _raise_config_error(exc)
            raise  # unreachable

    @classmethod
    def from_preset(
        cls: type[C],
        preset: str | None = "cpu-small",
        file: str | Path | None = None,
        overrides: Iterable[str] = (),
    ) -> C:
        """Preset values, then the file's values, then ``key=value`` overrides, in that order."""
        values: dict[str, Any] = {}
        if preset is not None:
            if preset not in cls.presets:
                raise ConfigError("preset", f"unknown preset '{preset}'; choose from {sorted(cls.presets)}")
            values = _deep_update(values, cls.presets[preset])
        if file is not None:
            values = _deep_update(values, read_config_file(file))
        values = _deep_update(values, parse_overrides(overrides))
        return cls.load_json(values)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def replace(self: C, **changes: Any) -> C:
        return self.load_json(_deep_update(self.to_dict(), changes))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML mapping."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "config file does not exist")
    if not path.is_file():
        raise InputError(path, "is a folder, expected a YAML or JSON config file" if path.is_dir()
                         else "is not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(path, "is not a text file (a YAML or JSON config is expected)") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"cannot parse config: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InputError(path, f"cannot parse config: {getattr(exc, 'problem', None) or 'invalid YAML'}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, f"config must be a mapping of field: value, got {type(data).__name__}")
    return data
