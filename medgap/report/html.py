"""One self-contained HTML page from report sections (figures embedded, no external files).

A section is a dict ``{"title", "summary", "metrics", "figures", "tables"}``:
``metrics`` is a (nested) dict of numbers shown as a table, ``figures`` are PNG paths
(relative to ``base_dir``), ``tables`` optional ``{"name": {"columns": [...], "rows": [[...]]}}``,
``captions`` optional ``{figure file name: one line saying what to look for}``.
The page links every section from a table of contents and embeds each PNG as a
``data:`` URI, so the single file can be mailed or attached to a paper review.
"""

from __future__ import annotations

import base64
import datetime
import html
import math
import re
from pathlib import Path
from typing import Any, Iterable

import medgap
from medgap.io import atomic_write_text

__all__ = ["write_html_report", "flatten_metrics"]

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1b1f24;line-height:1.45}
h1{border-bottom:2px solid #2c6e9b;padding-bottom:.3em}
h2{margin-top:2em;color:#2c6e9b}
nav ol{columns:2}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #c9d1d9;padding:.25em .6em;text-align:left}
th{background:#eef3f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#57606a}
.note{background:#fff8e5;border-left:4px solid #e3b341;padding:.5em 1em}
footer{margin-top:3em;font-size:.8em;color:#57606a}
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``[("a / b", 1)]``; lists of numbers are kept as one value."""
    rows: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten_metrics(value, f"{name} / ")
        else:
            rows.append((name, value))
    return rows


def _fmt(value: Any) -> tuple[str, bool]:
    if isinstance(value, bool) or value is None:
        return html.escape(str(value)), False
    if isinstance(value, int):
        return f"{value:,}", True
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value), True
        return (f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"), True
    if isinstance(value, (list, tuple)):
        return html.escape(", ".join(_fmt(v)[0] for v in value)), False
    return html.escape(str(value)), False


def _table(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for value in row:
            text, numeric = _fmt(value)
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def write_html_report(
    path: str | Path,
    title: str,
    sections: list[dict[str, Any]],
    base_dir: str | Path | None = None,
    intro: str = "",
    note: str = "",
) -> Path:
    """Write ``sections`` as one self-contained HTML page at ``path`` (atomically)."""
    path = Path(path)
    base = Path(base_dir) if base_dir is not None else path.parent
    toc, parts = [], []
    used: set[str] = set()
    for section in sections:
        anchor = _slug(section["title"])
        while anchor in used:
            anchor += "-x"
        used.add(anchor)
        toc.append(f'<li><a href="#{anchor}">{html.escape(section["title"])}</a></li>')
        body = [f'<section id="{anchor}" class="report-section"><h2>{html.escape(section["title"])}</h2>']
        if section.get("summary"):
            body.append(f"<p>{html.escape(section['summary'])}</p>")
        if section.get("metrics"):
            body.append(_table(["metric", "value"], flatten_metrics(section["metrics"])))
        for name, table in (section.get("tables") or {}).items():
            body.append(f"<h3>{html.escape(name)}</h3>" + _table(table["columns"], table["rows"]))
        for fig in section.get("figures", []):
            fig_path = base / fig
            if not fig_path.exists():
                raise FileNotFoundError(f"{fig_path}: figure listed in section '{section['title']}' does not exist")
            caption = (section.get("captions") or {}).get(Path(fig).name, Path(fig).stem.replace("_", " "))
            body.append(_figure(fig_path, caption))
        body.append("</section>")
        parts.append("\n".join(body))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
{f"<p>{html.escape(intro)}</p>" if intro else ""}
{f'<p class="note">{html.escape(note)}</p>' if note else ""}
<nav><h2>Contents</h2><ol>{''.join(toc)}</ol></nav>
{''.join(parts)}
<footer>medgap {medgap.__version__}, written {stamp}.</footer>
</body></html>
"""
    return atomic_write_text(path, page)
