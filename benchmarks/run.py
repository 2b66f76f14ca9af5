"""Run benchmarks and write their tables into docs/benchmarks.md.

    python benchmarks/run.py                 # every benchmarks/bench_*.py
    python benchmarks/run.py bench_harmonize # only that one (its section is replaced)
    python benchmarks/run.py --quick ...     # pass --quick to each benchmark

Each benchmark prints markdown to stdout; its section in docs/benchmarks.md lies
between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` and is replaced in place,
stamped with the date and the machine it ran on.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "benchmarks.md"
sys.path.insert(0, str(HERE))

from machine import machine_info  # noqa: E402

HEADER = """# Benchmarks

Every number here was printed by a script in `benchmarks/` and written by
`make bench` (or `python benchmarks/run.py NAME`). Each section names the machine
it ran on and, where it times heavy work, the machine's fp32 ceilings measured in
the same run: the machines are shared and their throughput swings with load, so
compare ratios, not raw seconds across sections.
"""


def run_one(name: str, quick: bool, seeds: int | None = None) -> str:
    script = HERE / f"{name}.py"
    if not script.exists():
        raise SystemExit(f"no benchmark {script}")
    extra = [f"--seeds={seeds}"] if seeds is not None else []
    cmd = [sys.executable, str(script)] + (["--quick"] if quick else []) + extra
    print(f"running {' '.join(cmd)}", file=sys.stderr)
    start = datetime.datetime.now(datetime.timezone.utc)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    sys.stderr.write(done.stderr[-4000:])
    if done.returncode != 0:
        raise SystemExit(f"{name} failed with exit code {done.returncode}")
    info = machine_info()
    minutes = (datetime.datetime.now(datetime.timezone.utc) - start).total_seconds() / 60
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else info["cores"]
    threads = os.environ.get("OMP_NUM_THREADS")
    cores = f"{info['cores']} cores" if usable == info["cores"] else f"{usable} of its {info['cores']} cores"
    cores += f", OMP_NUM_THREADS={threads}" if threads else ""
    stamp = (f"_Run {start:%Y-%m-%d %H:%M} UTC{' (--quick)' if quick else ''}, {minutes:.1f} min, on "
             f"{info['cpu']}, {cores}, {info.get('memory_gb', '?')} GB, torch {info['torch']}, "
             f"GPU: {info['gpu']}. Command: `python benchmarks/run.py {' '.join([name] + extra)}`._")
    return f"<!-- bench:{name} -->\n{stamp}\n\n{done.stdout.strip()}\n<!-- /bench:{name} -->"


def write_section(name: str, body: str) -> None:
    text = DOC.read_text() if DOC.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: body, text) if pattern.search(text) else text.rstrip() + "\n\n" + body + "\n"
    DOC.parent.mkdir(exist_ok=True)
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(DOC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="benchmark names (default: all bench_*.py)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, help="training seeds, for the benchmarks that take --seeds")
    args = parser.parse_args()
    names = args.names or sorted(p.stem for p in HERE.glob("bench_*.py"))
    for name in names:
        write_section(name.removesuffix(".py"), run_one(name.removesuffix(".py"), args.quick, args.seeds))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
