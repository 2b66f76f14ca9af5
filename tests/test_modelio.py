import json

import pytest
import torch

from medgap.errors import ModelFolderError
from medgap.modelio import load_model, save_model


def make_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))


def test_round_trip(tmp_path):
    net = make_net()
    stats = {"mean": torch.arange(4.0), "std": torch.ones(4)}
    folder = save_model(tmp_path / "m", method="toy", config={"width": 8}, weights={"net": net, "stats": stats},
                        trained_on={"files": ["a.nii.gz"]})
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "config.json", "manifest.json", "net.safetensors", "stats.safetensors"]
    saved = load_model(folder, method="toy")
    assert saved.config == {"width": 8}
    assert saved.info["trained_on"] == {"files": ["a.nii.gz"]}
    other = make_net()
    torch.nn.init.zeros_(other[0].weight)
    other.load_state_dict(saved.weights["net"])
    for a, b in zip(net.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(saved.weights["stats"]["mean"], stats["mean"])


def test_flipped_byte_is_detected(tmp_path):
    folder = save_model(tmp_path / "m", method="toy", config={}, weights={"net": make_net()})
    weights = folder / "net.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match="net.safetensors.*sha256"):
        load_model(folder, method="toy")


def test_truncated_and_missing(tmp_path):
    folder = save_model(tmp_path / "m", method="toy", config={}, weights={"net": make_net()})
    weights = folder / "net.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelFolderError, match="truncated"):
        load_model(folder, method="toy")
    weights.unlink()
    with pytest.raises(ModelFolderError, match="missing"):
        load_model(folder, method="toy")
    with pytest.raises(ModelFolderError, match="not a medgap model folder"):
        load_model(tmp_path, method="toy")


def test_other_methods_folder_is_refused(tmp_path):
    folder = save_model(tmp_path / "m", method="harmonize", config={}, weights={"net": make_net()})
    with pytest.raises(ModelFolderError, match="'harmonize' model folder, expected a 'transfer'"):
        load_model(folder, method="transfer")


def test_failed_save_keeps_old_folder(tmp_path):
    folder = save_model(tmp_path / "m", method="toy", config={"v": 1}, weights={"net": make_net()})
    with pytest.raises(ValueError):
        save_model(folder, method="toy", config={"v": 2}, weights={"net": make_net(), "../evil": make_net()})
    assert json.loads((folder / "config.json").read_text())["config"] == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
