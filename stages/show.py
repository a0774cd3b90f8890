"""``atomsieve show``: experiments side by side, in a table that fits a terminal.

DVC's ``dvc exp show`` lists every param and metric of every experiment, hundreds of
columns. This shows, from ``dvc exp show --json``, only what differs between the
experiments shown (params and metrics; numbers compared at 4 significant digits, the
precision shown), with short column names (the key, or ``stage:key`` where two stages
share a key), and wraps the columns into blocks of at most ``width`` characters, the
experiment's name first in each.
"""

import json
from pathlib import Path

from pipeline.core.errors import InputError
from pipeline.core.report import cell
from stages.sweep import changed, exp_show

WIDTH = 120


def experiments(prefix: str | None = None) -> list[tuple[str, dict]]:
    """``[(name, data)]`` of the workspace, its baseline and every named experiment (only
    those starting with ``prefix`` if given), from ``dvc exp show --json``."""
    out = []
    for commit in json.loads(exp_show() or "[]"):
        name = "workspace" if commit.get("rev") == "workspace" else (commit.get("name") or str(commit.get("rev"))[:7])
        if commit.get("data") and prefix is None:
            out.append((name, commit["data"]))
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("name") and rev.get("data") and (prefix is None or rev["name"].startswith(prefix)):
                    out.append((rev["name"], rev["data"]))
    return out


def flatten(data: dict) -> dict[str, object]:
    """``{column: value}`` of one experiment: ``param:dotted.key`` and ``stage:metric``."""
    row = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif not isinstance(node, list):
            row[f"param:{prefix}"] = node
    for content in (data.get("params") or {}).values():
        walk(content.get("data") or {}, "")
    for path, content in (data.get("metrics") or {}).items():
        for k, v in (content.get("data") or {}).items():
            if not isinstance(v, (dict, list)):
                row[f"{Path(path).parent.name}:{k}"] = v
    return row


def changed_columns(rows: list[dict]) -> list[str]:
    """Columns whose shown value differs between the rows, params first."""
    columns = list(dict.fromkeys(c for r in rows for c in r))
    return sorted(changed(columns, rows), key=lambda c: (not c.startswith("param:"), columns.index(c)))


def short_names(columns: list[str]) -> dict[str, str]:
    """The key alone where it is unique among ``columns``, else ``stage:key``."""
    keys = [c.split(":", 1)[1].split(".")[-1] for c in columns]
    return {c: k if keys.count(k) == 1 else c.removeprefix("param:") for c, k in zip(columns, keys)}


def render(names: list[str], rows: list[dict], columns: list[str], width: int = WIDTH) -> str:
    """Blocks of columns, each line at most ``width`` characters."""
    title = short_names(columns)
    first = max(len("experiment"), *(len(n) for n in names))
    widths = {c: max(len(title[c]), *(len(cell(r.get(c))) for r in rows)) for c in columns}
    blocks, current, used = [], [], first
    for c in columns:
        if current and used + 2 + widths[c] > width:
            blocks.append(current)
            current, used = [], first
        current.append(c)
        used += 2 + widths[c]
    blocks.append(current)
    out = []
    for block in blocks:
        out.append("  ".join(["experiment".ljust(first), *(title[c].rjust(widths[c]) for c in block)])[:width])
        out += ["  ".join([n.ljust(first), *(cell(r.get(c)).rjust(widths[c]) for c in block)])[:width]
                for n, r in zip(names, rows)]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def show(prefix: str | None = None, every: bool = False, width: int = WIDTH) -> str:
    found = experiments(prefix)
    if not found:
        raise InputError(f"atomsieve show: no experiment{' named ' + prefix + '*' if prefix else ''} in `dvc exp show`")
    names, rows = [n for n, _ in found], [flatten(d) for _, d in found]
    columns = list(dict.fromkeys(c for r in rows for c in r if not c.startswith("param:"))) if every \
        else changed_columns(rows)
    if not columns:
        return f"{len(rows)} experiments; no param or metric differs between them\n"
    return render(names, rows, columns, width)
