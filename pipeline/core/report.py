"""Tables and pages for people: CSV, Markdown and a self-contained HTML page.

The HTML page needs no network: its style is inline and its images are embedded as
``data:`` URIs, so it opens offline, from a file or an archive.
"""

import base64
import csv
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def cell(value) -> str:
    """A value as a table shows it: floats to 4 significant digits, None blank."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "inf" if value == float("inf") else f"{value:.4g}"
    return str(value)


def csv_text(columns: Sequence[str], records: Sequence[dict]) -> str:
    """CSV of ``records`` (full precision: ``repr`` of floats, empty for None)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in records:
        writer.writerow(["" if r.get(c) is None else (repr(float(r[c])) if isinstance(r[c], float) else r[c])
                         for c in columns])
    return buf.getvalue()


def markdown_table(columns: Sequence[str], records: Sequence[dict]) -> list[str]:
    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")
    return ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns),
            *["| " + " | ".join(escape(cell(r.get(c))) for c in columns) + " |" for r in records]]


@dataclass(frozen=True)
class Section:
    """A part of a page: a heading, paragraphs, then optionally a table and an image."""

    heading: str
    paragraphs: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    records: tuple[dict, ...] = ()
    image: Path | None = None
    caption: str = ""


def markdown(title: str, sections: Sequence[Section]) -> str:
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.heading}", ""]
        for p in s.paragraphs:
            lines += [p, ""]
        if s.columns:
            lines += [*markdown_table(s.columns, s.records), ""]
        if s.image is not None:
            lines += [f"![{s.caption}]({s.image.name})", ""]
    return "\n".join(lines)


STYLE = ("body{font-family:sans-serif;margin:2em;max-width:110em;color:#222}"
         "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
         "text-align:left;vertical-align:top}th{background:#eee;position:sticky;top:0}"
         "tr.compute td{background:#fff3e0}tr.check-label td{background:#ffebee}"
         "img{max-width:100%}caption{caption-side:bottom;font-size:12px;color:#555}")


def html_page(title: str, sections: Sequence[Section], row_class: str | None = None,
              images: dict[str, bytes] | None = None) -> str:
    """A page of ``sections``; each table row gets the CSS class of its ``row_class``
    column (spaces as dashes); ``images`` maps a section image's name to its PNG bytes,
    embedded."""
    images = images or {}
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
           f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        out.append(f"<h2>{html.escape(s.heading)}</h2>")
        out += [f"<p>{html.escape(p)}</p>" for p in s.paragraphs]
        if s.image is not None and s.image.name in images:
            data = base64.b64encode(images[s.image.name]).decode()
            out.append(f"<figure><img alt='{html.escape(s.caption)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{html.escape(s.caption)}</figcaption></figure>")
        if s.columns:
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in s.columns) + "</tr>")
            for r in s.records:
                klass = str(r.get(row_class, "")).replace(" ", "-") if row_class else ""
                out.append(f"<tr class='{html.escape(klass)}'>" +
                           "".join(f"<td>{html.escape(cell(r.get(c)))}</td>" for c in s.columns) + "</tr>")
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
