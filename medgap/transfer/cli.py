"""``medgap transfer``: simulate, train, apply, evaluate. Parses arguments and calls the Python API."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console

from medgap.errors import InputError
from medgap.outputs import json_text

app = typer.Typer(help="Unsupervised sim-to-real transfer of spectral data (cINN; baselines: per-channel "
                            "standardisation, CORAL, UNIT, CycleGAN).",
                  no_args_is_help=True)
console = Console()


def _wavelengths(spec: Optional[str]) -> Optional[np.ndarray]:
    """'500:1000:5' (start:stop:step, stop excluded), a comma list, or a .npy/.txt file of nm values."""
    if spec is None:
        return None
    p = Path(spec)
    if p.exists():
        return np.load(p, allow_pickle=False) if p.suffix == ".npy" else np.loadtxt(p)
    try:
        if ":" in spec:
            start, stop, step = (float(v) for v in spec.split(":"))
            return np.arange(start, stop, step)
        return np.array([float(v) for v in spec.split(",")])
    except ValueError as exc:
        raise InputError(spec, "wavelengths must be start:stop:step, a comma list or a file") from exc


@app.command()
def simulate(
    modality: str = typer.Option("hsi", "--modality", help="hsi (pixel spectra) or pat (images)."),
    n: int = typer.Option(..., "--n", min=2, max=10_000_000, help="Number of spectra (hsi) or images (pat)."),
    out: Path = typer.Option(..., "--out", help="Output .npz (spectra or images format)."),
    realism: str = typer.Option("simple", "--realism", help="simple, or rich: the 'real-like' stand-in."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    wavelengths: Optional[str] = typer.Option(None, "--wavelengths", help="Grid in nm, e.g. 500:1000:5."),
    height: int = typer.Option(128, "--height", help="PAT image height (pixels, depth)."),
    width: int = typer.Option(256, "--width", help="PAT image width (pixels)."),
) -> None:
    """Write labelled simulated data (tissue labels / segmentations) in medgap's npz formats."""
    from medgap.data.spectra import simulate_hsi, simulate_pat
    from medgap.io import write_images, write_spectra

    from medgap.outputs import check_output_file

    check_output_file(out, (), suffixes=(".npz",))
    wl = _wavelengths(wavelengths)
    if modality == "hsi":
        write_spectra(out, simulate_hsi(n, wavelengths=wl, realism=realism, seed=seed))
    elif modality == "pat":
        write_images(out, simulate_pat(n, wavelengths=wl, shape=(height, width), realism=realism, seed=seed))
    else:
        raise InputError(None, f"--modality must be hsi or pat, got {modality!r}")
    console.print(f"wrote {out}")


@app.command()
def train(
    sim: Path = typer.Option(..., "--source", "--sim", help="Labelled source domain: simulations or another lab "
                                                             "(.npz spectra/images/cube)."),
    real: Path = typer.Option(..., "--target", "--real", help="Target domain (.npz/.npy): real recordings; their "
                                                              "labels are never used (subject 'groups' are)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    modality: Optional[str] = typer.Option(None, "--modality", help="hsi or pat (default: from the data)."),
    condition: Optional[str] = typer.Option(None, "--condition", help="domain or domain+label (cINN)."),
    method: Optional[str] = typer.Option(None, "--method", help="cinn (default), unit, cyclegan, or the closed-form "
                                                                "baselines standardise and coral."),
    preset: str = typer.Option("cpu-small", "--preset", help="cpu-small or paper."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON/YAML file of config values."),
    set_: list[str] = typer.Option([], "--set", help="Override, e.g. --set train.epochs=5 (repeatable)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 (default) or bf16 mixed precision."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=2**32 - 1),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue the checkpoints of an earlier run in <out>.run/ (--no-resume: discard them)."),
    wavelengths: Optional[str] = typer.Option(None, "--wavelengths", help="Grid of bare .npy cubes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing transfer model folder at --out."),
) -> None:
    """Train a transfer model; checkpoints go to <out>.run/, the model folder to --out."""
    from medgap.transfer.config import TransferConfig
    from medgap.transfer.data import load_data
    from medgap.modelio import check_output_folder
    from medgap.transfer.trainer import train as run

    overrides = list(set_)
    for key, value in (("modality", modality), ("condition", condition), ("method", method), ("train.seed", seed),
                       ("train.precision", precision)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = TransferConfig.from_preset(preset, config, overrides)
    check_output_folder(out, "transfer", overwrite=overwrite)  # before reading large inputs
    wl = _wavelengths(wavelengths)
    sim_data, _ = load_data(sim, wl)
    real_data, _ = load_data(real, wl)
    data_modality = sim_data.modality
    if modality is not None and modality != data_modality:
        raise InputError(sim, f"--modality {modality} but the file holds {data_modality} data")
    run(cfg.replace(modality=data_modality), (sim_data, real_data), out, device=device, resume=resume,
        overwrite=overwrite)
    console.print(f"model written to {out}")


@app.command("skin-lab")
def skin_lab(
    origin: list[int] = typer.Argument(..., help="Lab(s) of the International Skin Spectra Archive: 1-11 "
                                                 "(development labs 1, 2, 3, 4, 9; 5-8, 10, 11 are medgap's test labs)."),
    out: Path = typer.Option(..., "--out", help="Output spectra .npz (labels = body location, groups = subject)."),
    location: Optional[list[str]] = typer.Option(None, "--location", help="Body locations to keep (repeatable; "
                                                 "default: the six every development lab measured)."),
    archive: Optional[Path] = typer.Option(None, "--archive", help="An ISSA .xlsx of the same layout, or its .npz "
                                                                   "(default: the copy `make setup` installed)."),
) -> None:
    """Write the real skin spectra of one lab (400-700 nm, % reflectance) as a labelled spectra file."""
    from medgap.data.skin import load_archive, skin_lab as take
    from medgap.io import write_spectra
    from medgap.outputs import check_output_file

    check_output_file(out, (archive,), suffixes=(".npz",))
    data = take(origin, location, load_archive(archive))
    write_spectra(out, data)
    counts = np.bincount(data.labels, minlength=len(data.label_names))
    console.print(f"wrote {out}: {len(data)} spectra of {len(np.unique(data.groups))} subjects; "
                  + ", ".join(f"{n} {c}" for n, c in zip(data.label_names, counts)))


@app.command()
def apply(
    model_dir: Path = typer.Argument(..., help="Model folder written by 'medgap transfer train'."),
    input: Path = typer.Argument(..., help="Data to transfer (.npz spectra/images/cube or .npy cube)."),
    out: Path = typer.Option(..., "--out", help="Output file, same format as the input."),
    direction: str = typer.Option("sim2real", "--direction", help="sim2real (source -> target) or real2sim."),
    device: str = typer.Option("auto", "--device"),
    batch_size: int = typer.Option(8192, "--batch-size", min=1, max=10_000_000, help="Spectra (or pixels) per batch."),
    wavelengths: Optional[str] = typer.Option(None, "--wavelengths", help="Grid of a bare .npy cube."),
) -> None:
    """Transfer data with a trained model (deterministic; labels carried over)."""
    from medgap.outputs import check_output_file
    from medgap.transfer.apply import apply_transfer, load_transfer
    from medgap.transfer.data import load_data, write_like

    check_output_file(out, (input, model_dir), suffixes=(".npz",))
    model = load_transfer(model_dir, device)
    data, layout = load_data(input, _wavelengths(wavelengths))
    result = apply_transfer(model, data, direction, batch_size=batch_size)
    write_like(out, result, layout)
    console.print(f"wrote {out}")
    if layout is None and getattr(result, "weights", None) is not None:
        shares = model.extras["target_class_shares"]
        absent = [name for name, share in shares.items() if share == 0]
        console.print("with 'weights': the target's estimated class mix "
                      f"({', '.join(f'{n} {v:.0%}' for n, v in shares.items())}); train a classifier with them "
                      "(sample_weight)" + (f" -- the target seems to lack {', '.join(absent)}, which weigh 0" if absent else ""))


@app.command()
def evaluate(
    real: Path = typer.Option(..., "--real", help="Real data with labels (+ groups) for the downstream test."),
    sim: Path = typer.Option(..., "--sim", help="The simulations."),
    transferred: list[str] = typer.Option([], "--transferred", help="NAME=FILE.npz (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Report folder (metrics.json + PNGs)."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    test: Optional[Path] = typer.Option(None, "--test", help="Labelled real data of other subjects to test the "
                                                             "classifiers on (default: a grouped split of --real)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs of an earlier run in --out "
                                   "(only files medgap wrote there)."),
) -> None:
    """PCA/KDE, spectral difference, MMD and downstream random forest of each source vs. real."""
    from medgap.transfer.data import load_data
    from medgap.transfer.evaluation import evaluate as run

    from medgap.outputs import check_not_inside_inputs

    check_not_inside_inputs(out, [real, sim, test] + [t.split("=", 1)[-1] for t in transferred])
    sources = {}
    for item in transferred:
        if "=" not in item:
            raise InputError(item, "--transferred must look like NAME=FILE.npz")
        name, file = item.split("=", 1)
        sources[name] = load_data(Path(file))[0]
    metrics = run(load_data(real)[0], load_data(sim)[0], sources, out, seed=seed,
                  test=None if test is None else load_data(test)[0], overwrite=overwrite)
    console.print_json(json_text(metrics["sources"], default=float))
    console.print(f"report written to {out}")
