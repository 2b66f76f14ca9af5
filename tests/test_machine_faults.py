"""Failures of the machine and diverged training end in one line, `error: PATH: problem`, exit 2,
with nothing partial left -- never a traceback, never a NaN model."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from medgap.errors import ModelFolderError, TrainingDivergedError
from medgap.modelio import load_model, save_model
from medgap.training.runtime import check_finite_loss

from folder_helpers import rewrite_manifest


def _medgap(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medgap", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_a_diverged_model_is_never_saved_and_a_nan_folder_never_loads(tmp_path):
    net = torch.nn.Linear(3, 2)
    with torch.no_grad():
        net.weight[0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="1 non-finite value"):
        save_model(tmp_path / "m", method="transfer", config={"a": 1}, weights={"w": net})
    assert not (tmp_path / "m").exists()

    folder = save_model(tmp_path / "ok", method="transfer", config={"a": 1}, weights={"w": torch.nn.Linear(3, 2)})
    state = {k: v.clone() for k, v in torch.nn.Linear(3, 2).state_dict().items()}
    state["bias"][1] = float("inf")
    save_file(state, str(folder / "w.safetensors"))
    rewrite_manifest(folder)  # re-hashed, so only the value check can catch it
    with pytest.raises(ModelFolderError, match="NaN or infinite"):
        load_model(folder, method="transfer")


def test_training_stops_at_the_first_non_finite_loss_and_names_the_setting():
    check_finite_loss({"loss_g": 1.0, "loss_d": 0.5}, 3, "lr_g")
    with pytest.raises(TrainingDivergedError, match="loss_d became nan at step 7.*lower lr_g"):
        check_finite_loss({"loss_g": 1.0, "loss_d": float("nan")}, 7, "lr_g")


def test_machine_faults_are_one_line_and_leave_nothing(tmp_path):
    long_name = "a" * 300 + ".npz"
    for out, message in ((long_name, "File name too long"), ("/proc/medgap.npz", "/proc/medgap.npz: ")):
        done = _medgap("transfer", "simulate", "--n", "20", "--out", out, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
        assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, fragment", [
    (["transfer", "simulate", "--n", "10", "--out", "s.npz", "--seed", "99999999999999999999999"], "--seed"),
    (["gap", "a.npz", "b.npz", "--seed", "-5"], "--seed"),
    (["gap", "a.npz", "b.npz", "--permutations", "100000000"], "--permutations"),
    (["synthesize", "train", "--out", "q", "--max-minutes", "nan"], "--max-minutes"),
    (["synthesize", "train", "--out", "q", "--max-minutes", "-1"], "--max-minutes"),
    (["transfer", "apply", "m", "s.npz", "--out", "t.npz", "--batch-size", "0"], "--batch-size"),
    (["synthesize", "evaluate", "m", "--real", "icbm152", "--out", "r", "--n", "1"], "--n"),
])
def test_numbers_out_of_range_are_refused_before_any_work(tmp_path, args, fragment):
    from typer.testing import CliRunner

    from medgap.cli import app

    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2 and f"Invalid value for '{fragment}'" in done.output, done.output
    assert list(tmp_path.iterdir()) == []


def test_infinite_or_nan_settings_are_refused():
    from medgap.errors import ConfigError
    from medgap.harmonize.config import HarmonizeConfig
    from medgap.transfer.config import TransferConfig

    for config, key in ((TransferConfig, "hsi.lr"), (HarmonizeConfig, "train.lr")):
        for value in ("inf", "nan"):
            with pytest.raises(ConfigError, match="finite"):
                config.from_preset("cpu-small", overrides=[f"{key}={value}"])


def test_json_written_or_printed_is_always_valid():
    import json

    import numpy as np

    from medgap.outputs import json_text

    text = json_text({"a": float("nan"), "b": np.float32(np.inf), "c": [1.5, np.nan], "d": np.arange(2)})
    assert json.loads(text) == {"a": None, "b": None, "c": [1.5, None], "d": [0, 1]}


def test_spectra_that_cannot_be_learned_from_are_refused(tmp_path):
    import zipfile

    import numpy as np

    from medgap.errors import InputError
    from medgap.io import SpectraSet, read_spectra, write_spectra
    from medgap.transfer.data import check_pair

    wl = np.linspace(500, 600, 4)
    good = SpectraSet(np.random.default_rng(0).random((10, 4)).astype(np.float32), wl)
    cases = {
        "at least 2 wavelengths": SpectraSet(np.ones((10, 1), np.float32), wl[:1]),
        "training needs at least 2": SpectraSet(np.ones((1, 4), np.float32), wl),
        "all 10 spectra are identical": SpectraSet(np.ones((10, 4), np.float32), wl),
    }
    for message, bad in cases.items():
        with pytest.raises(InputError, match=message):
            check_pair(good if bad.spectra.shape[1] == 4 else bad, bad, need_labels=False)
    with pytest.raises(InputError, match="shape \\(10,\\)"):
        SpectraSet(good.spectra, wl, np.zeros((10, 2), int))
    with pytest.raises(InputError, match="at most 100,000 classes"):
        SpectraSet(good.spectra, wl, np.full(10, 10**12))
    with pytest.raises(InputError, match="must not be negative"):
        SpectraSet(good.spectra, np.array([-5.0, 1.0, 2.0, 3.0]))
    path = write_spectra(tmp_path / "s.npz", good)
    with zipfile.ZipFile(path, "a") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr("spectra.npy", b"x")  # a second entry of the same name
    with pytest.raises(InputError, match="'spectra' appears twice"):
        read_spectra(path)
