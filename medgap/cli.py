"""The ``medgap`` command. It only parses arguments and calls the Python API."""

from __future__ import annotations

import signal
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

import medgap
from medgap.errors import MedgapError
from medgap.harmonize.cli import app as harmonize_app
from medgap.synthesize.cli import app as synthesize_app
from medgap.transfer.cli import app as transfer_app
from medgap.outputs import json_text

app = typer.Typer(
    name="medgap",
    help="Close the domain gap in medical imaging with generative models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
app.add_typer(harmonize_app, name="harmonize")
app.add_typer(transfer_app, name="transfer")
app.add_typer(synthesize_app, name="synthesize")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medgap {medgap.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, max=4096, help="CPU threads for this run (default: OMP_NUM_THREADS, else the "
                                                 "CPUs this process may use, shared among torchrun's processes)."),
) -> None:
    """medgap: sim-to-real spectral transfer, blind MR harmonization, high-resolution 3D synthesis."""
    from medgap.training.threads import configure_threads

    configure_threads(threads)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", help="Folder for figures, metrics and the report."),
    quick: bool = typer.Option(False, "--quick", help="Smaller data and fewer steps (a few minutes)."),
    only: Optional[list[str]] = typer.Option(None, "--only", help="Run only these sections."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs of an earlier run in --out "
                                   "(only files medgap wrote there)."),
) -> None:
    """Run every method end to end on the data that ships offline."""
    from medgap.demo import run_demo

    results = run_demo(out, quick=quick, only=only, overwrite=overwrite)
    for name, result in results.items():
        console.rule(f"[bold]{result['title']}[/] ({result['seconds']} s)")
        console.print(result["summary"])
        console.print_json(json_text(result["metrics"], default=float))
        for fig in result["figures"]:
            console.print(f"figure: {out / fig}")
    console.print(f"[green]demo written to {out}/ -- open {out / 'report.html'}[/]")


@app.command()
def inspect(
    paths: list[Path] = typer.Argument(..., help="Volumes (NIfTI, NRRD, MetaImage, DICOM folders) or medgap .npz."),
    series: Optional[str] = typer.Option(None, "--series", help="DICOM: SeriesInstanceUID or series number."),
) -> None:
    """Check files and print what they hold (shape, spacing, wavelengths, labels) as JSON."""
    from medgap.io import describe_file

    for path in paths:
        console.print_json(json_text(describe_file(path, series=series)))


@app.command()
def gap(
    a: Path = typer.Argument(..., help="Dataset A (e.g. the source site): volume file or folder, DICOM series "
                                       "folder, or spectra/images .npz."),
    b: Path = typer.Argument(..., help="Reference dataset B (e.g. the target site), of the same kind as A."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (metrics.json, PNGs, report.html)."),
    after: Optional[Path] = typer.Option(None, "--after", help="A after harmonisation/transfer: also report how "
                                                               "much of the A-B gap it closed."),
    name_a: Optional[str] = typer.Option(None, help="Display name of A."),
    name_b: Optional[str] = typer.Option(None, help="Display name of B."),
    name_after: Optional[str] = typer.Option(None, help="Display name of --after."),
    unit: str = typer.Option("auto", help="Images: compare whole 'volume's or axial 'slice's (auto: volumes "
                                          "when each side has >= 10)."),
    permutations: int = typer.Option(100, min=10, max=100_000, help="Permutations for the classifier test's p-value "
                                                                    "(each refits the classifier: 100 take ~a minute)."),
    bootstrap: int = typer.Option(200, min=20, max=100_000, help="Bootstrap resamples for intervals and null levels."),
    per_class: Optional[bool] = typer.Option(None, "--per-class/--no-per-class",
                                             help="Spectra: compare class by class (default: when both have labels)."),
    seed: int = typer.Option(0, min=0, max=2**32 - 1),
    as_json: bool = typer.Option(False, "--json", help="Print only the metrics as JSON."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs of an earlier run in --out "
                                   "(only files medgap wrote there)."),
) -> None:
    """How far apart are two datasets, and (with --after) how much of the gap was closed?

    Per measure (tissue intensities, contrast, bias field, texture; spectral distances for spectra):
    value, bootstrap 95% interval and null level; a group-aware classifier two-sample test; FID/MMD
    on network features.
    """
    from medgap.gap import measure_gap

    if unit not in ("auto", "volume", "slice"):
        raise typer.BadParameter("unit must be auto, volume or slice")
    metrics = measure_gap(a, b, out, after=after, name_a=name_a, name_b=name_b, name_after=name_after, unit=unit,
                          permutations=permutations, bootstrap=bootstrap, per_class=per_class, seed=seed,
                          overwrite=overwrite)
    if as_json:
        typer.echo(json_text(metrics, indent=2))
        return
    _print_gap(metrics)
    if out is not None:
        console.print(f"[green]report: {out / 'report.html'}[/]")


def _print_gap(metrics: dict) -> None:
    from rich.table import Table

    pairs = [("before", metrics["before"]), ("after", metrics["after"])] if "before" in metrics else [("", metrics)]
    for label, m in pairs:
        table = Table(title=f"{label + ': ' if label else ''}{m['a']['name']} vs {m['b']['name']} ({m['unit']}s)")
        for column in ("measure", "sees", "value", "95% CI", "null level", "gap"):
            table.add_column(column)
        for name, v in m["measures"].items():
            table.add_row(name, v["sees"], f"{v['value']:.4g}", f"{v['ci95'][0]:.4g} .. {v['ci95'][1]:.4g}",
                          f"{v['null95']:.4g}", "yes" if v["detected"] else "no")
        console.print(table)
        ct = m["classifier_test"]
        console.print(f"classifier two-sample test: balanced accuracy {ct['balanced_accuracy']:.3f} "
                      f"(0.5 = indistinguishable), p = {ct['p_value']:.3g}; FID {m['fid']:.4g}, MMD^2 {m['mmd2']:.4g} "
                      f"on {m['features']}")
    for line in metrics.get("headline", []):
        console.print(line)


def _error(message: str) -> None:
    from rich.text import Text

    Console(stderr=True).print(Text("error: ", style="red") + Text(message), highlight=False, soft_wrap=True)
    sys.exit(2)


class Terminated(SystemExit):
    """SIGTERM/SIGHUP as an exception, so every ``finally`` (temporary files, locks) runs.

    A SystemExit, not a KeyboardInterrupt: click turns the latter into a bare "Aborted!".
    """

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signal_name = signal.Signals(signum).name


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """medgap's own warnings as one 'warning: ...' line (they speak to the user, not to a developer);
    other libraries' warnings as Python shows them."""
    if Path(filename).resolve().is_relative_to(Path(medgap.__file__).resolve().parent):
        from rich.text import Text

        Console(stderr=True).print(Text("warning: ", style="yellow") + Text(str(message)), highlight=False,
                                   soft_wrap=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def main() -> None:
    """Entry point: MedgapError (bad input, bad config) -> 'error: ...' on stderr, exit code 2.

    SIGTERM and SIGHUP (a killed job, a closed terminal) stop the command like Ctrl-C does:
    partial outputs are removed, and the exit code is 128 + the signal number.
    """
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_terminated)
    warnings.showwarning = _show_warning
    try:
        app()
    except MedgapError as exc:
        _error(str(exc))
    except OSError as exc:  # the machine, not the input: disk full, read-only, permissions, long names
        where = exc.filename if exc.filename is not None else "medgap"
        _error(f"{where}: {exc.strerror or exc} (nothing partial was kept)")
    except MemoryError:
        _error("out of memory: use smaller inputs or settings (batch size, image size); nothing partial was kept")
    except Terminated as exc:
        Console(stderr=True).print(f"[red]stopped by {exc.signal_name}[/]: no partial output was kept",
                                   highlight=False)
        raise


if __name__ == "__main__":
    main()
