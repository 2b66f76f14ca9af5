"""The ``medgap`` command. It only parses arguments and calls the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

import medgap
from medgap.errors import MedgapError
from medgap.transfer.cli import app as transfer_app

app = typer.Typer(
    name="medgap",
    help="Close the domain gap in medical imaging with generative models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
app.add_typer(transfer_app, name="transfer")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medgap {medgap.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """medgap: sim-to-real spectral transfer, blind MR harmonization, high-resolution 3D synthesis."""


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", help="Folder for figures, metrics and the report."),
    quick: bool = typer.Option(False, "--quick", help="Smaller data and fewer steps (a few minutes)."),
    only: Optional[list[str]] = typer.Option(None, "--only", help="Run only these sections."),
) -> None:
    """Run every method end to end on the data that ships offline."""
    from medgap.demo import run_demo

    results = run_demo(out, quick=quick, only=only)
    for name, result in results.items():
        console.rule(f"[bold]{result['title']}[/] ({result['seconds']} s)")
        console.print(result["summary"])
        console.print_json(json.dumps(result["metrics"], default=float))
        for fig in result["figures"]:
            console.print(f"figure: {out / fig}")
    console.print(f"[green]demo written to {out}/[/]")


@app.command()
def inspect(paths: list[Path] = typer.Argument(..., help="NIfTI volumes or medgap .npz files.")) -> None:
    """Check files and print what they hold (shape, spacing, wavelengths, labels) as JSON."""
    from medgap.io import describe_file

    for path in paths:
        console.print_json(json.dumps(describe_file(path)))


def main() -> None:
    """Entry point: MedgapError (bad input, bad config) -> 'error: ...' on stderr, exit code 2."""
    try:
        app()
    except MedgapError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
