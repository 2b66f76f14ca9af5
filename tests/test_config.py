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
