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


def test_every_renamed_key_points_at_a_current_key():
    from medgap.config import _field_default, _split
    from medgap.config_docs import _methods

    for method, model in _methods().items():
        leaves = set(_leaf_keys(model))
        for old, new in model.renamed.items():
            path, index = _split(new)
            assert ".".join(path) in leaves, f"{method}: {old} -> {new} names no current key"
            assert old not in leaves, f"{method}: {old} is still a current key"
            if index is not None:
                assert index < len(_field_default(model, path)), f"{method}: {new} is past the pair's end"


def test_model_folders_written_with_the_old_keys_load_unchanged():
    """A config.json of the earlier layouts (synthesize flat; harmonize's separate bounds and seeds;
    transfer's top-level seed) loads to the configuration it meant."""
    from medgap.harmonize.config import HarmonizeConfig
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.transfer.config import TransferConfig

    old_gan = {"size": 32, "width": 0.5, "latent_dim": 16, "conditional": False, "modality": "ct",
               "ct_window": [-1000.0, 400.0], "mr_percentiles": [0.5, 99.5], "spacing_mm": None,
               "cache_dtype": "float16", "augment": True, "augment_pool": 8, "iterations": 40, "batch_size": 2,
               "lr_g": 1e-4, "lr_d": 2e-4, "beta1": 0.0, "beta2": 0.99, "log_every": 5, "checkpoint_every": 20,
               "keep_last": 3, "precision": "fp32", "recon_weight": 0.0, "latent_prior": "normal",
               "diff_augment": False, "minibatch_std": False, "ema_decay": 0.0, "r1_gamma": 0.0, "seed": 7}
    gan = SynthesizeConfig.load_json(old_gan)
    assert (gan.model.size, gan.model.width, gan.data.modality, gan.data.ct_window) == (32, 0.5, "ct", (-1000, 400))
    assert (gan.train.steps, gan.train.betas, gan.train.keep_checkpoints, gan.train.seed) == (40, (0.0, 0.99), 3, 7)
    assert gan.model.latent_prior == "normal" and gan.train.lr_d == 2e-4

    old_h = HarmonizeConfig.from_preset("cpu-small").to_dict()
    restore = old_h["restore"]
    for key in ("gate", "doubt", "bias_gate"):
        del restore[key]
    restore.update(gate_low=1.5, gate_high=3.0, doubt_low=None, doubt_high=3.5, bias_gate_low=0.05,
                   bias_gate_high=0.2, seed=0)
    old_h["flow"]["seed"] = 0
    h = HarmonizeConfig.load_json(old_h)
    assert (h.restore.gate, h.restore.doubt, h.restore.bias_gate) == ((1.5, 3.0), None, (0.05, 0.2))

    t = TransferConfig.load_json({"seed": 5, "method": "coral"})
    assert (t.train.seed, t.method) == (5, "coral")
    with pytest.warns(FutureWarning, match="replace\\(\\): configuration key 'seed' is now 'train.seed'"):
        assert t.replace(seed=6).train.seed == 6


def test_old_keys_on_the_command_line_warn_and_still_apply():
    from medgap.harmonize.config import HarmonizeConfig
    from medgap.synthesize.config import SynthesizeConfig

    with pytest.warns(FutureWarning, match="'iterations' is now 'train.steps'"):
        cfg = SynthesizeConfig.from_preset("paper", overrides=["iterations=12", "beta2=0.9"])
    assert cfg.train.steps == 12 and cfg.train.betas == (0.0, 0.9)  # paper's beta1 kept
    with pytest.warns(FutureWarning, match="restore.gate_high"):
        cfg = HarmonizeConfig.from_preset("cpu-small", overrides=["restore.gate_high=5"])
    assert cfg.restore.gate == (2.0, 5.0)
    with pytest.raises(ConfigError, match="restore.gate"):
        HarmonizeConfig.from_preset("cpu-small", overrides=["restore.gate=[3, 1]"])


def test_a_run_recorded_with_the_old_keys_resumes(tmp_path):
    """A training interrupted under an earlier version (flat synthesize keys) resumes under this one: the
    recorded settings are brought to the current keys before they are compared; a real change still
    blocks the resume."""
    from medgap.errors import InputError
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.synthesize.train import run_settings
    from medgap.training.rundir import RunFolder

    cfg = SynthesizeConfig.from_preset("cpu-small")
    flat = {k: v for section in cfg.to_dict().values() for k, v in section.items()}
    flat.update(beta1=flat["betas"][0], beta2=flat["betas"][1], keep_last=flat["keep_checkpoints"])
    old = {k: v for k, v in flat.items() if k not in ("betas", "keep_checkpoints", "steps", "checkpoint_every",
                                                       "log_every")}
    folder = tmp_path / "m.run"
    RunFolder(folder, "synthesize", old, "abc").open().close()
    with pytest.raises(InputError, match="another run"):
        RunFolder(folder, "synthesize", run_settings(cfg), "abc").open()
    run = RunFolder(folder, "synthesize", run_settings(cfg), "abc", upgrade=cfg.upgrade_keys).open()
    assert run.resumable
    run.close()
    changed = run_settings(cfg.replace(train={"lr_d": 1e-3}))
    with pytest.raises(InputError, match="train.lr_d"):
        RunFolder(folder, "synthesize", changed, "abc", upgrade=cfg.upgrade_keys).open()
