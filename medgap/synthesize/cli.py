"""``medgap synthesize``: train HA-GAN, sample, encode, evaluate. Parses and calls the Python API."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console

from medgap.errors import InputError
from medgap.outputs import json_text

app = typer.Typer(help="HA-GAN: generate and encode high-resolution 3D CT/MR volumes.", no_args_is_help=True)
console = Console()
_ICBM = "icbm152"  # medgap.synthesize.data.ICBM152 (not imported here: `medgap --help` stays free of torch)
_COHORT = "t1-cohort"  # medgap.synthesize.data.T1_COHORT
_INSTALLED = (_ICBM, _COHORT, "head-ct")


def _load_data(data: list[str], cfg, labels: Optional[str], cache_dir: Optional[Path]):
    from medgap.synthesize.data import load_training_set

    label_list = None
    if labels is not None:
        try:
            label_list = [int(v) for v in labels.split(",")]
        except ValueError:
            raise InputError(None, f"--labels must be comma-separated integers, got '{labels}'") from None
    return load_training_set(data, cfg, labels=label_list, cache_dir=cache_dir)


@app.command()
def train(
    data: Optional[list[str]] = typer.Argument(None, help="NIfTI/NRRD/DICOM files and/or folders; or 't1-cohort' "
                                               "(the default: five real T1 brains that install offline, one more "
                                               "held out), 'icbm152' (one template) or 'head-ct' (the installed "
                                               "real head CT)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    preset: str = typer.Option("cpu-small", "--preset", help="cpu-small | paper"),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON/YAML config file."),
    set_: list[str] = typer.Option([], "--set", help="Override a config field, e.g. --set train.lr_d=2e-4 "
                                                     "(repeatable)."),
    size: Optional[int] = typer.Option(None, "--size", help="Volume side in voxels (power of two >= 32)."),
    steps: Optional[int] = typer.Option(None, "--steps", "--iterations", help="Training iterations (overrides "
                                                                           "train.steps)."),
    modality: Optional[str] = typer.Option(None, "--modality", help="ct (HU window) or mr (percentile clip)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Comma-separated class per input file (conditional)."),
    device: str = typer.Option("auto", "--device"),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, bf16 mixed precision, or auto (bf16 where native)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=2**32 - 1, help="Training seed (default 0)."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", min=0.01, max=1e6,
                                                help="Stop (with a checkpoint) after this long."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue the checkpoints of an earlier run in "
                                "OUT.run/ (--no-resume: discard them and start over)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing synthesize model folder at --out."),
) -> None:
    """Train HA-GAN on a folder of volumes; resumes from <out>.run/checkpoints when interrupted."""
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.synthesize.train import train as run
    from medgap.training.contract import run_folder
    from medgap.modelio import check_output_folder
    from medgap.training.rundir import check_run_folder

    overrides = list(set_)
    for key, value in (("model.size", size), ("train.steps", steps), ("data.modality", modality),
                       ("train.precision", precision), ("train.seed", seed)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if labels is not None:
        overrides.append("model.conditional=true")
    cfg = SynthesizeConfig.from_preset(preset, config, overrides)
    if not data:
        if cfg.data.modality != "mr":
            raise InputError(None, "no volumes given: the default training set, the installed T1 cohort, is MR; "
                                   "give CT volumes (or 'head-ct') to train a CT model")
        data = [_COHORT]
        console.print("no volumes given: training on the installed real T1 cohort (5 brains; pycortex's S1 held "
                      "out; score with `medgap synthesize evaluate MODEL --real t1-cohort`)")
    work = run_folder(out)
    # checked before the data cache is written into the run folder
    check_output_folder(out, "synthesize", overwrite=overwrite)
    check_run_folder(work, prepared=("cache",))
    ts = _load_data(data, cfg, labels, work / "cache")
    result = run(cfg, ts, out, device=device, resume=resume, overwrite=overwrite,
                 max_seconds=None if max_minutes is None else 60 * max_minutes)
    console.print(f"trained {result.steps} iterations in {result.seconds:.0f} s; model folder: {result.model}")


@app.command()
def sample(
    model_dir: Path = typer.Argument(..., help="Model folder written by 'train'."),
    n: int = typer.Option(4, "--n", min=1, max=10_000, help="Number of volumes."),
    out: Path = typer.Option(..., "--out", help="Folder for sample_000.nii.gz ..."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    label: Optional[int] = typer.Option(None, "--label", help="Class to generate (conditional models)."),
    max_memory: Optional[float] = typer.Option(None, "--max-memory", help="Peak memory budget in GB."),
    device: str = typer.Option("auto", "--device"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs of an earlier run in --out "
                                   "(only files medgap wrote there)."),
) -> None:
    """Generate new volumes as NIfTI (RAS, isotropic voxels of the training spacing)."""
    from medgap.synthesize.api import Synthesizer

    syn = Synthesizer.load(model_dir, device=device)
    from medgap.outputs import check_not_inside_inputs

    check_not_inside_inputs(out, (model_dir,))
    for path in syn.save_samples(out, n, seed=seed, label=label, max_memory_gb=max_memory, overwrite=overwrite):
        console.print(str(path))


@app.command()
def encode(
    model_dir: Path = typer.Argument(...),
    volume: Path = typer.Argument(..., help="Volume to encode (NIfTI, NRRD, MetaImage, DICOM folder)."),
    out: Path = typer.Option(..., "--out", help="Latent code z as .npy."),
    reconstruction: Optional[Path] = typer.Option(None, "--reconstruction", help="Also write G(z) as NIfTI."),
    label: Optional[int] = typer.Option(None, "--label"),
    device: str = typer.Option("auto", "--device"),
    series: Optional[str] = typer.Option(None, "--series", help="DICOM: SeriesInstanceUID or series number."),
) -> None:
    """Encode a volume into z = E^G(E^H(x)) (and reconstruct it)."""
    from medgap.outputs import check_output_file
    from medgap.synthesize.api import Synthesizer

    check_output_file(out, (volume, model_dir), suffixes=(".npy",))  # before anything is read
    if reconstruction is not None:
        check_output_file(reconstruction, (volume, model_dir, out), suffixes=(".nii", ".nii.gz"))
    syn = Synthesizer.load(model_dir, device=device)
    z_path, rec = syn.encode_to_files(volume, out, reconstruction, label, series)
    console.print(f"z: {z_path}" + (f"; reconstruction: {rec}" if rec else ""))


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(...),
    real: list[str] = typer.Option(..., "--real", help="Real volumes (files/folders), 't1-cohort' (the installed "
                                   "cohort's six brains, its held-out subject included) or 'icbm152' (augmented "
                                   "copies of the bundled template)."),
    out: Path = typer.Option(..., "--out", help="Report folder (metrics.json, montage.png)."),
    n: int = typer.Option(8, "--n", min=2, max=10_000, help="Number of generated volumes (>= 2: FID and "
                                                           "diversity compare volumes with one another)."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    label: Optional[int] = typer.Option(None, "--label"),
    feature_weights: Optional[Path] = typer.Option(None, "--feature-weights",
                                                   help="Local MedicalNet ResNet-10 weights (.pth/.safetensors)."),
    slice_feature_weights: Optional[Path] = typer.Option(
        None, "--slice-feature-weights", help="Local 2D ResNet-10 weights (.pth/.safetensors) for the 2.5D FID."),
    max_memory: Optional[float] = typer.Option(None, "--max-memory"),
    device: str = typer.Option("auto", "--device"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs of an earlier run in --out "
                                   "(only files medgap wrote there)."),
) -> None:
    """FID / MMD^2 on 3D features, per-plane 2.5D FID, MS-SSIM diversity (samples beside real volumes), anatomy
    against the nearest real volume (r inside the head), memorisation (distance to the nearest real volume),
    montage of samples vs. real."""
    from medgap.synthesize.api import Synthesizer
    from medgap.synthesize.evaluate import evaluate_model

    from medgap.outputs import check_not_inside_inputs

    check_not_inside_inputs(out, [model_dir] + [r for r in real if r not in _INSTALLED])
    syn = Synthesizer.load(model_dir, device=device)
    if real == [_COHORT]:
        from medgap.synthesize.data import cohort_dataset

        ts = cohort_dataset(syn.config.replace(model={"conditional": False}), split="all")
    else:
        ts = _load_data(real, syn.config.replace(model={"conditional": False}), None, None)
    volumes = np.asarray(ts.volumes, dtype=np.float32)
    if real == [_ICBM]:  # one template brain: compare with augmented copies of it
        from medgap.synthesize.data import augmented_copies

        volumes = augmented_copies(volumes[0], n, seed=seed + 1)
    report = evaluate_model(syn, volumes, out, n=n, seed=seed, label=label,
                            feature_weights=feature_weights, max_memory_gb=max_memory,
                            slice_feature_weights=slice_feature_weights, overwrite=overwrite)
    console.print_json(json_text(report))

