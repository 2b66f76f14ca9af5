import json
from typing import Literal

import pytest
from pydantic import Field

from medgap.config import MedgapConfig
from medgap.errors import ConfigError, InputError


class Optim(MedgapConfig):
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)


class ToyConfig(MedgapConfig):
    size: int = Field(64, ge=8)
    mode: Literal["pearson", "cosine"] = "pearson"
    optim: Optim = Optim()
    presets = {"cpu-small": {"size": 32}, "paper": {"size": 144, "optim": {"lr": 5e-4}}}


def test_presets_file_and_overrides_in_order(tmp_path):
    assert ToyConfig.from_preset("paper").size == 144
    assert ToyConfig.from_preset("paper").optim.lr == 5e-4
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("size: 96\noptim:\n  lr: 0.01\n")
    cfg = ToyConfig.from_preset("cpu-small", file=cfg_file, overrides=["optim.lr=0.02", "mode=cosine"])
    assert (cfg.size, cfg.optim.lr, cfg.mode) == (96, 0.02, "cosine")
    assert ToyConfig.load_json(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize(
    "override, field",
    [("size=4", "size"), ("mode=spearman", "mode"), ("optim.lr=-1", "optim.lr"), ("sise=64", "sise"),
     ("size=abc", "size")],
)
def test_bad_value_names_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        ToyConfig.from_preset("cpu-small", overrides=[override])
    assert f"'{field}'" in str(err.value)


def test_unknown_preset_and_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="preset"):
        ToyConfig.from_preset("huge")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        ToyConfig.from_preset(file=bad)


def test_the_config_reference_is_generated_from_the_models():
    from pathlib import Path

    from medgap.config_docs import config_reference

    page = Path(__file__).resolve().parent.parent / "docs" / "config.md"
    assert page.read_text() == config_reference() + "\n", "regenerate: python -m medgap.config_docs > docs/config.md"


def _leaf_keys(model, prefix=""):
    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _leaf_keys(field.annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def test_every_config_key_is_read_by_the_code():
    """A key nobody reads would be a setting that silently does nothing: every leaf key of every
    method's configuration is read as an attribute (``.key``) or by name (``"key"``) somewhere in
    medgap outside its own definition (in the method's config module only attribute reads count, so a
    preset table naming a key does not)."""
    import re
    from pathlib import Path

    import medgap
    from medgap.config_docs import _methods

    root = Path(medgap.__file__).parent
    unread = []
    for method, model in _methods().items():
        own = root / method / "config.py"
        code = "\n".join(p.read_text() for p in root.rglob("*.py") if p not in (own, root / "config_docs.py"))
        own_code = own.read_text()
        for key in _leaf_keys(model):
            name = key.split(".")[-1]
            if not (re.search(rf"\.{name}\b|[\"']{name}[\"']", code) or re.search(rf"\.{name}\b", own_code)):
                unread.append(f"{method}: {key}")
    assert not unread, f"configuration keys that no code reads: {unread}"
