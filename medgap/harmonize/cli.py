"""``medgap harmonize``: train a target flow, apply it, score images, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from medgap.errors import InputError
from medgap.outputs import json_text

app = typer.Typer(help="Blind MR harmonisation trained on your own scanner's images only (default: Nyul + a "
                       "restoration net; the publication's flow method: --method blindharmony).",
                  no_args_is_help=True)
console = Console()

_PRESET = typer.Option("cpu-small", "--preset", help="cpu-small or paper.")
_CONFIG = typer.Option(None, "--config", help="JSON/YAML file of config values.")
_SET = typer.Option(None, "--set", help="Override a config value, e.g. --set harmonize.alpha=0.01 (repeatable).")
_DEVICE = typer.Option("auto", "--device", help="auto, cpu or cuda.")


_SERIES = typer.Option(None, "--series", help="DICOM folder or DICOMDIR with several series: its "
                                                 "SeriesInstanceUID or series number.")
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing model folder of this method at --out.")


@app.command()
def train(
    targets: Optional[list[Path]] = typer.Argument(None, help="Target-domain volumes or a BIDS root (default: the "
                                                              "bundled real T1 cohort, docs/harmonize.md)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    mask: Optional[list[Path]] = typer.Option(None, "--mask", help="Brain mask per target (repeat, same order)."),
    preset: str = _PRESET,
    config: Optional[Path] = _CONFIG,
    set_: Optional[list[str]] = _SET,
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (overrides train.steps)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=2**32 - 1, help="Training seed."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 (default) or bf16: the flow's "
                                                                      "conditioners in bfloat16."),
    device: str = _DEVICE,
    resume: bool = typer.Option(True, "--resume/--no-resume",
                                help="Continue the checkpoints of an earlier run in OUT.run/ (--no-resume: discard them)."),
    overwrite: bool = _OVERWRITE,
) -> None:
    """Train the target flow and the restoration net; resumes from OUT.run/ (works under torchrun)."""
    from medgap.harmonize.config import HarmonizeConfig
    from medgap.harmonize.train import load_training_set
    from medgap.harmonize.train import train as train_fn
    from medgap.modelio import check_output_folder

    overrides = list(set_ or [])
    if steps is not None:
        overrides.append(f"train.steps={steps}")
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    if precision is not None:
        overrides.append(f"train.precision={precision}")
    cfg = HarmonizeConfig.from_preset(preset, config, overrides).check()
    from medgap.adapters.bids import find_anat, is_bids_root

    check_output_folder(out, "harmonize", overwrite=overwrite)  # before reading the targets
    targets = [f for t in targets or [] for f in (find_anat(t) if is_bids_root(t) else [t])]
    data = load_training_set(cfg, [str(t) for t in targets], [str(m) for m in mask or []] or None) if targets else None
    result = train_fn(cfg, data, out, device=device, resume=resume, overwrite=overwrite)
    console.print_json(json_text(result.to_dict()))


@app.command()
def apply(
    model: Path = typer.Argument(..., help="Model folder from `medgap harmonize train`, or 'cohort-t1': the "
                                           "ready model of the bundled real T1 cohort's look."),
    source: Path = typer.Argument(..., help="Source-domain volume, or a BIDS dataset root."),
    out: Path = typer.Option(..., "--out", help="Output NIfTI (.nii/.nii.gz), on the source's grid; for a BIDS "
                                                "dataset, the derivatives folder."),
    method: str = typer.Option("auto", "--method",
                               help="auto (restore when the model has it, else blindharmony), restore, "
                                    "blindharmony (the publication's optimiser), histogram, n4+histogram (N4 bias "
                                    "correction, then histogram matching), nyul, whitestripe, zscore, fcm "
                                    "(intensity-normalization), lowfreq or identity."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Brain mask of the source (voxels outside stay)."),
    detail: str = typer.Option("keep", "--detail",
                               help="keep: add the model-grid change to the source at its own resolution; "
                                    "resample: return the resampled model-grid result."),
    set_: Optional[list[str]] = _SET,
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 (default) or bf16 for the flow's "
                                                                      "conditioners (blindharmony)."),
    device: str = _DEVICE,
    participant_label: Optional[list[str]] = typer.Option(None, "--participant-label",
                                                          help="BIDS: only these participants (repeatable)."),
    suffix: str = typer.Option("T1w", "--suffix", help="BIDS: the images to harmonise (*_<suffix>.nii[.gz])."),
    series: Optional[str] = _SERIES,
    report: Optional[Path] = typer.Option(None, "--report", help="Also write what was done as JSON: method, the "
                                          "restoration net's weight and self-disagreement, how unusual the source "
                                          "is for this model (bits/dim z-score)."),
) -> None:
    """Harmonise SOURCE (a volume, or every T1w of a BIDS dataset) to the target domain of MODEL."""
    from medgap.adapters.bids import harmonize_bids, is_bids_root
    from medgap.harmonize.api import Harmonizer

    from medgap.harmonize.api import resolve_model
    from medgap.outputs import check_output_file

    model = resolve_model(model)
    if not is_bids_root(source):  # before anything is read: the output is never an input
        check_output_file(out, (source, mask, model), suffixes=(".nii", ".nii.gz"))
        if report is not None:
            check_output_file(report, (source, mask, model, out), suffixes=(".json",))
    elif report is not None:
        raise InputError(report, "--report describes one volume; a BIDS dataset's outputs carry their own JSON "
                                 "sidecars")
    overrides = tuple(set_ or ()) + ((f"harmonize.precision={precision}",) if precision else ())
    h = Harmonizer.load(model, device=device, overrides=overrides)
    if is_bids_root(source):
        written = harmonize_bids(h, source, out, method=method, participants=participant_label, suffix=suffix,
                                 detail=detail, model_dir=model)
        console.print(f"wrote {len(written)} harmonised image(s) under {out}")
        return
    path = h.apply_file(source, out, method=method, mask=mask, progress=True, detail=detail, series=series,
                        report=report)
    gate = ""
    if h.last_gate is not None:
        doubt = "" if h.last_doubt is None else f", disagreement with its mirror image {h.last_doubt:.1f} x r0"
        gate = (f" (restoration net weight {h.last_gate:.2f}{doubt}; weight 0 keeps Nyul's result: nothing to "
                "correct, or an input unlike the net's training)")
    if h.last_levelling is not None and h.last_levelling["largest_gain_change"] > 0.02:
        gate += (f"; slice gains levelled along z first ({h.last_levelling['slices_changed']} slices, up to "
                 f"{h.last_levelling['largest_gain_change']:.0%})")
    if h.last_bias is not None and h.last_bias["weight"] > 0:
        gate += (f"; a 3D bias field was undone first (N4 field spread {h.last_bias['field_spread']:.3f}, "
                 f"weight {h.last_bias['weight']:.2f})")
    console.print(f"wrote {path}{gate}")


@app.command()
def score(
    model: Path = typer.Argument(..., help="Model folder, or 'cohort-t1' (the ready model)."),
    images: list[Path] = typer.Argument(..., help="NIfTI volumes to score."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Brain mask (same for every image)."),
    as_json: bool = typer.Option(False, "--json", help="Print full JSON (per-slice bits/dim)."),
    device: str = _DEVICE,
) -> None:
    """Bits/dim of each image under the target flow (higher = less like the target scanner)."""
    from medgap.harmonize.api import Harmonizer

    h = Harmonizer.load(model, device=device)
    results = [h.score_file(p, mask) for p in images]
    if as_json:
        console.print_json(json_text(results))
        return
    for r in results:
        extra = f"  z={r['z_score']:+.1f} vs target" if "z_score" in r else ""
        console.print(f"{r['image']}: {r['bits_per_dim']:.4f} bits/dim{extra}")


@app.command()
def evaluate(
    model: Path = typer.Argument(..., help="Model folder trained on the bundled ICBM152 target."),
    out: Path = typer.Option(..., "--out", help="Report folder (metrics.json + PNG figures)."),
    domain: Optional[list[str]] = typer.Option(None, "--domain", help="Only these simulated domains."),
    method: Optional[list[str]] = typer.Option(None, "--method", help="Only these methods."),
    max_slices: Optional[int] = typer.Option(None, "--max-slices", help="Evaluate on at most this many slices."),
    seg_steps: int = typer.Option(300, "--seg-steps", help="Training steps of the WM segmentation UNet."),
    device: str = _DEVICE,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs of an earlier run in --out "
                                   "(only files medgap wrote there)."),
) -> None:
    """Simulated source domains from held-out target slices: PSNR/SSIM and WM Dice/IoU per method."""
    from medgap.harmonize.evaluate import evaluate as evaluate_fn

    from medgap.outputs import check_not_inside_inputs

    check_not_inside_inputs(out, (model,))
    res = evaluate_fn(model, out, domain, method, device, seg_steps, max_slices, overwrite=overwrite)
    for name in ("mean_paper", "mean_hard", "mean"):
        if name in res:
            console.print(f"[bold]{name}[/]")
            for m, v in res[name].items():
                console.print(f"  {m:13s} PSNR {v['psnr']:6.2f} dB  SSIM {v['ssim']:.3f}  WM Dice {v['dice']:.3f}")
    console.print(f"target WM Dice {res['target']['dice']:.3f}; report in {out}/")
