"""docs/config.md, generated from the configuration models themselves.

    python -m medgap.config_docs > docs/config.md

Every key of every method's configuration with its type, its ``cpu-small`` default, its
``paper`` value where that differs, its allowed range and its description (the pydantic field's
``description``, else the comment beside or above the field), and the table of keys of earlier
versions with their current names (the class's ``renamed``). ``tests/test_config.py`` checks that
docs/config.md is what this module writes, so the page never drifts from the code.
"""

from __future__ import annotations

import json
import typing
from typing import Any

from pydantic import BaseModel

__all__ = ["config_reference"]


def _methods() -> dict[str, type[BaseModel]]:
    from medgap.harmonize.config import HarmonizeConfig
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.transfer.config import TransferConfig

    return {"harmonize": HarmonizeConfig, "transfer": TransferConfig, "synthesize": SynthesizeConfig}


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    name = getattr(annotation, "__name__", None) or str(annotation)
    return name.replace("typing.", "").replace("|", "\\|")


def _bounds(field) -> str:
    parts = []
    for item in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{sign} {value:,}" if isinstance(value, int) else f"{sign} {value}")
    return ", ".join(parts)


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the comment beside it (``x: int = 1  # ...``) or on the lines right above it."""
    import inspect
    import re

    try:
        lines = inspect.getsource(model).splitlines()
    except (OSError, TypeError):
        return {}
    found, above = {}, []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        match = re.match(r"\s+(\w+): [^=]+=.*?(?:#\s*(.*))?$", line)
        if match:
            found[match.group(1)] = " ".join([*above, match.group(2) or ""]).strip()
        above = []
    return found


def _value(value: Any) -> str:
    return "`" + json.dumps(value) + "`"


def _rows(model: type[BaseModel], defaults: dict, paper: dict, prefix: str = "") -> list[str]:
    rows = []
    comments = _comments(model)
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _rows(annotation, defaults.get(name, {}), paper.get(name, {}), f"{key}.")
            continue
        default, published = defaults.get(name), paper.get(name)
        paper_cell = _value(published) if published != default else ""
        description = (field.description or comments.get(name, "")).replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{key}` | {_type_name(annotation)} | {_value(default)} | {paper_cell} | {_bounds(field)} | "
                    f"{description} |")
    return rows


def config_reference() -> str:
    """The markdown page: one table per method."""
    lines = ["# Configuration reference", "",
             "Generated from the configuration models by `python -m medgap.config_docs` (do not edit by hand).",
             "Set any key with `--set KEY=VALUE`, a `--config` YAML/JSON file, or `--preset`; values outside the",
             "range are refused before any work. `paper` lists the publication's value where it differs from",
             "`cpu-small`.", ""]
    for method, model in _methods().items():
        defaults = model.from_preset("cpu-small").to_dict()
        paper = model.from_preset("paper").to_dict() if "paper" in model.presets else defaults
        rows = _rows(model, defaults, paper)
        lines += [f"## {method} ({len(rows)} keys)", "",
                  "| key | type | cpu-small | paper | range | meaning |", "|---|---|---|---|---|---|", *rows, ""]
        if model.renamed:
            lines += [f"Keys of earlier versions, still read from model folders, config files and `--set` "
                      f"(with a warning):", "", "| old key | current key |", "|---|---|",
                      *(f"| `{old}` | `{new}` |" for old, new in model.renamed.items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(config_reference())
