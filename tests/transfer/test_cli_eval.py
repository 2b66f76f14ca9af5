import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from typer.testing import CliRunner

from medgap.data.spectra import simulate_hsi
from medgap.errors import InputError
from medgap.io import SpectraSet, read_spectra
from medgap.transfer.cli import app as transfer_app
from medgap.transfer.evaluation import evaluate

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "train.epochs=1", "--set", "hsi.n_blocks=2", "--set", "hsi.n_conditional=2", "--set", "hsi.hidden=16",
        "--set", "hsi.batch_size=128", "--set", "train.iterations_per_epoch=2"]


def medgap(*args, cwd):
    """Run ``medgap transfer ...`` in this process (importing torch once for all calls)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(transfer_app, list(args))
    finally:
        os.chdir(old)


def test_cli_end_to_end_and_clear_errors(tmp_path):
    grid = ["--wavelengths", "500:1000:25"]
    assert medgap("simulate", "--n", "300", "--out", "sim.npz", *grid, cwd=tmp_path).exit_code == 0
    assert medgap("simulate", "--n", "300", "--realism", "rich", "--seed", "1", "--out", "real.npz", *grid,
                  cwd=tmp_path).exit_code == 0
    done = medgap("train", "--sim", "sim.npz", "--real", "real.npz", "--out", "model", *TINY, cwd=tmp_path)
    assert done.exit_code == 0, done.output
    assert (tmp_path / "model" / "generator.safetensors").exists()
    done = medgap("apply", "model", "sim.npz", "--out", "tr.npz", cwd=tmp_path)
    assert done.exit_code == 0, done.output
    tr, sim = read_spectra(tmp_path / "tr.npz"), read_spectra(tmp_path / "sim.npz")
    np.testing.assert_array_equal(tr.labels, sim.labels)
    done = medgap("evaluate", "--real", "real.npz", "--sim", "sim.npz", "--transferred", "cinn=tr.npz",
                  "--out", "report", cwd=tmp_path)
    assert done.exit_code == 0, done.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert {"sim", "cinn", "real (upper bound)"} <= set(metrics["sources"])
    # the closed-form baseline through the same commands, tested on other subjects
    assert medgap("simulate", "--n", "300", "--realism", "rich", "--seed", "2", "--out", "test.npz", *grid,
                  cwd=tmp_path).exit_code == 0
    assert medgap("train", "--sim", "sim.npz", "--real", "real.npz", "--out", "coral", "--method", "coral",
                  cwd=tmp_path).exit_code == 0
    assert medgap("apply", "coral", "sim.npz", "--out", "tr_coral.npz", cwd=tmp_path).exit_code == 0
    done = medgap("evaluate", "--real", "real.npz", "--sim", "sim.npz", "--transferred", "coral=tr_coral.npz",
                  "--test", "test.npz", "--out", "report2", cwd=tmp_path)
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "report2" / "metrics.json").read_text())["downstream_test"]["held_out"]

    # an HSI cube (H, W, C) as .npy with the grid given on the command line, written back as a cube
    np.save(tmp_path / "cube.npy", sim.spectra[:60].reshape(6, 10, -1))
    done = medgap("train", "--sim", "sim.npz", "--real", "cube.npy", "--wavelengths", "500:1000:25", "--out",
                  "model2", "--condition", "domain", *TINY, cwd=tmp_path)
    assert done.exit_code == 0, done.output
    done = medgap("apply", "model2", "cube.npy", "--wavelengths", "500:1000:25", "--direction", "real2sim",
                  "--out", "cube_sim.npz", cwd=tmp_path)
    assert done.exit_code == 0, done.output
    with np.load(tmp_path / "cube_sim.npz") as f:
        assert f["cube"].shape == (6, 10, 20)

    # bad input: a clear error naming the file, no output written
    done = medgap("apply", "model", "cube.npy", "--out", "bad.npz", cwd=tmp_path)
    assert isinstance(done.exception, InputError) and "cube.npy" in str(done.exception)
    np.savez(tmp_path / "other.npz", spectra=np.ones((5, 7), np.float32), wavelengths=np.arange(600.0, 607.0))
    done = medgap("apply", "model", "other.npz", "--out", "bad.npz", cwd=tmp_path)
    assert isinstance(done.exception, InputError) and "differs" in str(done.exception)
    assert not (tmp_path / "bad.npz").exists()
    # through the real entry point: "error: <file>: <problem>", exit code 2, no traceback
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "medgap", "transfer", "apply", "sim.npz", "sim.npz", "--out", "bad.npz"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "sim.npz" in done.stderr and "model folder" in done.stderr
    assert "Traceback" not in done.stderr


def test_evaluate_reports_gap_and_downstream(tmp_path):
    wl = np.arange(500.0, 1000.0, 20.0)
    sim = simulate_hsi(600, wavelengths=wl, seed=0)
    real = simulate_hsi(600, wavelengths=wl, realism="rich", seed=1)
    real_too = simulate_hsi(600, wavelengths=wl, realism="rich", seed=2)  # a perfect "transfer"
    m = evaluate(real, sim, {"oracle": real_too}, tmp_path)
    s = m["sources"]
    assert s["oracle"]["mmd2"] < 0.2 * s["sim"]["mmd2"]
    assert s["oracle"]["spectral_difference_mean"] < s["sim"]["spectral_difference_mean"]
    assert s["oracle"]["balanced_accuracy"] > s["sim"]["balanced_accuracy"] + 0.1
    for key in ("balanced_accuracy", "auroc", "f1_weighted"):
        assert 0 <= s["sim"][key] <= 1
    for fig in m["figures"]:
        assert (tmp_path / fig).stat().st_size > 5000
    assert json.loads((tmp_path / "metrics.json").read_text())["sources"]["sim"]["mmd2"] == s["sim"]["mmd2"]


def test_evaluate_tests_on_other_subjects_when_given(tmp_path):
    wl = np.arange(500.0, 1000.0, 20.0)
    sim = simulate_hsi(600, wavelengths=wl, seed=0)
    real = simulate_hsi(600, wavelengths=wl, realism="rich", seed=1)
    test = simulate_hsi(400, wavelengths=wl, realism="rich", seed=7)
    m = evaluate(real, sim, {}, tmp_path, test=test)
    assert m["downstream_test"] == {"n": 400, "groups": len(np.unique(test.groups)), "held_out": True}
    assert m["sources"]["real (upper bound)"]["balanced_accuracy"] > m["sources"]["sim"]["balanced_accuracy"]
    with pytest.raises(InputError, match="needs labels"):
        evaluate(real, sim, {}, tmp_path / "x", test=SpectraSet(test.spectra, wl))


def test_evaluate_with_unlabelled_real_still_tests_the_sources_on_the_test_set(tmp_path):
    wl = np.arange(500.0, 1000.0, 20.0)
    sim = simulate_hsi(600, wavelengths=wl, seed=0)
    real = simulate_hsi(600, wavelengths=wl, realism="rich", seed=1)
    test = simulate_hsi(400, wavelengths=wl, realism="rich", seed=7)
    m = evaluate(SpectraSet(real.spectra, wl), sim, {}, tmp_path, test=test)
    assert 0 <= m["sources"]["sim"]["balanced_accuracy"] <= 1
    assert "real (upper bound)" not in m["sources"]
