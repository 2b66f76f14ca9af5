"""Typed configurations with named presets, loadable from JSON/YAML and overridable.

Each method subclasses :class:`MedgapConfig` with typed fields and a ``presets``
class attribute mapping a preset name (``cpu-small``, ``paper``) to field values.
Every value is checked by pydantic when the config is built; a bad value raises
:class:`~medgap.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path
from typing import Any, ClassVar, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from medgap.errors import ConfigError, InputError

__all__ = ["ConfigSection", "MedgapConfig", "parse_overrides"]

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


def _split(key: str) -> tuple[list[str], int | None]:
    """``"a.b[1]"`` -> (["a", "b"], 1); ``"a.b"`` -> (["a", "b"], None)."""
    match = re.fullmatch(r"(.+)\[(\d+)\]", key)
    return (match.group(1).split("."), int(match.group(2))) if match else (key.split("."), None)


def _pop(values: dict, path: list[str]) -> tuple[bool, Any]:
    node = values
    for part in path[:-1]:
        node = node.get(part)
        if not isinstance(node, dict):
            return False, None
    return (True, node.pop(path[-1])) if path[-1] in node else (False, None)


def _lookup(values: dict, path: list[str]) -> tuple[bool, Any]:
    node = values
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _put(values: dict, path: list[str], value: Any) -> None:
    node = values
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _field_default(model: type[BaseModel], path: list[str]) -> Any:
    for part in path[:-1]:
        model = model.model_fields[part].annotation
    return model.model_fields[path[-1]].get_default(call_default_factory=True)


def current_keys(values: dict, model: type["MedgapConfig"], base: dict | None = None) -> tuple[dict, list[str]]:
    """``values`` with the keys of earlier versions (``model.renamed``) moved to their current names,
    and the old keys that were found. A key renamed into one element of a pair (``"a.b[0]"``) sets
    that element of the pair in ``values``, else in ``base`` (the values these update), else of the
    default; ``null`` there turns the pair off. Where the current key is given as well, it wins."""
    values, found = copy.deepcopy(values), []
    for old, new in model.renamed.items():
        present, value = _pop(values, old.split("."))
        if not present:
            continue
        found.append(old)
        path, index = _split(new)
        has_new, current = _lookup(values, path)
        if index is None:
            if not has_new:
                _put(values, path, value)
            continue
        if value is None:
            _put(values, path, None)
            continue
        if has_new and current is None:  # the pair is turned off in these values
            continue
        if not has_new:
            in_base, current = _lookup(base or {}, path)
            if not in_base or current is None:
                current = _field_default(model, path)
        pair = list(current)
        pair[index] = value
        _put(values, path, pair)
    return values, found


class ConfigSection(BaseModel):
    """One section of a method's configuration (``model``, ``data``, ``train``, ...)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)


class MedgapConfig(BaseModel):
    """Base of every method's configuration.

    The three methods share one grammar: ``train`` holds the run (``steps`` or ``epochs``,
    ``batch_size``, learning rates, ``seed``, ``precision``, ``checkpoint_every``, ``log_every``),
    ``model`` (or the method's own network section) the network, ``data`` how inputs are read.
    ``renamed`` maps keys of earlier versions to their current names: model folders and config files
    written with them still load, and ``--set`` accepts them with a warning.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)

    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    renamed: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _current_keys(cls, values: Any) -> Any:
        if isinstance(values, dict) and cls.renamed:
            return current_keys(values, cls)[0]
        return values

    @classmethod
    def upgrade_keys(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` (a saved config or run record, possibly partial) with the keys of earlier versions
        renamed to the current ones."""
        return current_keys(values, cls)[0]

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
        layers = ([(str(file), read_config_file(file))] if file is not None else []) + \
                 [("--set", parse_overrides(overrides))]
        for source, layer in layers:
            values = _deep_update(values, cls._current(layer, values, source))
        return cls.load_json(values)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def _current(cls, changes: dict, values: dict, source: str) -> dict:
        """``changes`` with the keys of earlier versions renamed (:func:`current_keys`), each old key warned
        about as coming from ``source`` (a file, ``--set``, ``replace()``)."""
        changes, old = current_keys(changes, cls, values)
        for key in old:
            warnings.warn(f"{source}: configuration key '{key}' is now '{cls.renamed[key]}'", FutureWarning,
                          stacklevel=3)
        return changes

    def replace(self: C, **changes: Any) -> C:
        values = self.to_dict()
        return self.load_json(_deep_update(values, self._current(changes, values, "replace()")))


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
