"""``atomsieve sweep``: Hydra's sweep syntax as named DVC experiments, and a report that
answers the sweep's question.

``sweep(overrides, name, jobs)`` expands ``a=1,2,3``, ``range(...)``, ``choice(...)``,
``glob(...)`` (several keys: their product) with Hydra's own parser, composes and
checks every combination first (a bad key or value queues nothing), queues each as
the DVC experiment ``<name>-<i>``, runs the queue on ``jobs`` workers (``dvc queue
start``, then waits for these experiments), and writes the report. ``report(name)``
draws it again from ``dvc exp show --json``: ``outputs/sweeps/<name>/report.md`` (what
changed first: the metrics whose shown value, 4 significant digits, differs between
the experiments, and which configurations each experiment recommends computing, with
their overlap; then every metric), one PNG per changed metric against each swept key,
and ``results.csv`` (every row of the table, for ``dvc plots show``). An experiment's
recommendation is read from its commit (``outputs/recommend/recommendation.csv`` is
kept in git).
"""

import csv
import io
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.core.atomic import staged
from pipeline.core.errors import ConfigError, InputError, Interrupted
from pipeline.core.report import cell, markdown_table

log = logging.getLogger(__name__)
OUT = Path("outputs/sweeps")
POLL_SECONDS = 2.0
FINISHED = ("Success", "Failed")


def expand(overrides: list[str]) -> list[list[str]]:
    """Every combination the sweep overrides name, each a list of plain overrides."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if not overrides:
        raise ConfigError("atomsieve sweep: expected at least one override, e.g. 'matching.weight_tol=1e-3,1e-4'")
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
        batches = BasicSweeper.split_arguments(parsed, None)
    except HydraException as err:
        raise ConfigError(f"atomsieve sweep: cannot parse {list(overrides)}: {str(err).splitlines()[0]} "
                          "(Hydra's override grammar: a=1,2,3  a=range(0,4)  a=choice(x,y)  group=glob(*))") from err
    combos = [list(c) for batch in batches for c in batch]
    if len(combos) < 2:
        log.warning("atomsieve sweep: %s names a single experiment", list(overrides))
    return combos


def swept_keys(overrides: list[str]) -> list[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return [o.get_key_element().lstrip("+~") for o in OverridesParser.create().parse_overrides(list(overrides))
            if o.is_sweep_override()]


def check_all(combos: list[list[str]], conf_dir: Path, recorded: list[str]) -> None:
    """Compose and validate every combination (with the recorded overrides first), and
    reach its Dask scheduler or SSH hosts if it names any."""
    from pipeline.core.dask_backend import probe
    from stages.cli import compose
    from stages.common import load_config
    from stages.runtime import dask_of

    with tempfile.TemporaryDirectory() as scratch:
        for i, combo in enumerate(combos):
            try:
                compose([*recorded, *combo], Path(scratch) / f"{i}.yaml", conf_dir, record=False)
                runtime = load_config(Path(scratch) / f"{i}.yaml").runtime
                if runtime.executor == "dask":
                    probe(dask_of(runtime.dask))
            except ConfigError as err:
                raise ConfigError(f"atomsieve sweep: experiment {i} ({combo}) is refused, so none is queued: {err}") \
                    from err


def dvc(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if check and proc.returncode:
        raise InputError(f"dvc {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def queue(name: str, combos: list[list[str]]) -> list[str]:
    names = [f"{name}-{i}" for i in range(len(combos))]
    existing = set(experiments_by_name())
    clash = sorted(set(names) & existing)
    if clash:
        raise ConfigError(f"atomsieve sweep: experiments {clash} exist already; choose another --name, or remove them "
                          f"(`dvc exp remove {' '.join(clash)}`)")
    for exp, combo in zip(names, combos):
        dvc("exp", "run", "--queue", "-n", exp, *[arg for o in combo for arg in ("-S", o)])
    return names


def run_queue(names: list[str], jobs: int, timeout: float) -> dict[str, str]:
    """Start ``jobs`` queue workers and wait until every experiment of ``names`` has
    finished; the final status of each. The workers are stopped after (DVC's own
    ``--run-all`` can wait for a worker that never exits: treeverse/dvc#10398)."""
    # the workers outlive this command: give them no pipe of ours to hold open
    if subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode:
        raise InputError(f"dvc queue start -j {jobs} failed; `dvc queue status` says why")
    started, status = time.monotonic(), {}
    try:
        while time.monotonic() - started < timeout:
            status = queue_status(names)
            if len(status) == len(names) and all(s in FINISHED for s in status.values()):
                return status
            time.sleep(POLL_SECONDS)
        raise InputError(f"atomsieve sweep: the experiments did not finish within {timeout:.0f} s: {status}")
    finally:
        if not others_pending(names):  # never stop workers another sweep or user still needs
            dvc("queue", "stop", check=False)


def others_pending(names: list[str]) -> bool:
    """Whether the queue holds experiments not of ``names`` that are queued or running."""
    for line in dvc("queue", "status", check=False).splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] not in names and parts[-1] in ("Queued", "Running"):
            return True
    return False


def abandon(name: str, names: list[str]) -> str:
    """After Ctrl-C: the sweep's experiments still queued removed; what is left said."""
    status = queue_status(names)
    waiting = [n for n, s in status.items() if s == "Queued"]
    if waiting:
        dvc("queue", "remove", *waiting, check=False)
    if not others_pending(names):
        dvc("queue", "stop", "--kill", check=False)
    done = [n for n, s in status.items() if s == "Success"]
    return (f"atomsieve sweep {name}: interrupted; {len(waiting)} queued experiments removed, {len(done)} finished "
            f"kept{f' (`atomsieve sweep --report {name}` reports them)' if done else ''}")


def queue_status(names: list[str]) -> dict[str, str]:
    """``{experiment: status}`` from ``dvc queue status`` for ``names``."""
    out = {}
    for line in dvc("queue", "status").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in names:
            out[parts[1]] = parts[-1]
    return out


def exp_show(tries: int = 5) -> str:
    """``dvc exp show --json``; tried again when it fails while another run's temporary
    workspace comes or goes (DVC lists them as it reads them: two sweeps at once)."""
    for attempt in range(tries):
        try:
            return dvc("exp", "show", "--json", "--no-pager")
        except InputError:
            if attempt == tries - 1:
                raise
            time.sleep(POLL_SECONDS)
    return ""


def experiments_by_name() -> dict[str, dict]:
    """``{name: data}`` of every named experiment, from ``dvc exp show --json``."""
    out = {}
    for commit in json.loads(exp_show() or "[]"):
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("name") and rev.get("data"):
                    out[rev["name"]] = rev["data"]
    return out


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def members(name: str, data: dict[str, dict], recorded: list[str] | None = None) -> list[str]:
    """The sweep's experiments, in order: those its record names, else ``<name>-<i>``
    exactly (not sweep ``<name>-9``'s ``<name>-9-<i>``)."""
    import re

    if recorded is not None:
        return [e for e in recorded if e in data]
    own = re.compile(rf"{re.escape(name)}-(\d+)")
    return sorted((e for e in data if own.fullmatch(e)), key=lambda e: int(e.rsplit("-", 1)[1]))


def table(name: str, keys: list[str], data: dict[str, dict],
          recorded: list[str] | None = None) -> tuple[list[str], list[dict]]:
    """The report's columns (swept keys, then every metric as ``file:key``) and rows."""
    rows, metrics = [], []
    for exp in members(name, data, recorded):
        d = data[exp]
        params = (d.get("params") or {}).get("params.yaml", {}).get("data", {})
        row = {"experiment": exp, **{k: _get(params, k) for k in keys}}
        for path, content in sorted((d.get("metrics") or {}).items()):
            stage = Path(path).parent.name
            for k, v in (content.get("data") or {}).items():
                if isinstance(v, (int, float, str, bool)) or v is None:
                    col = f"{stage}:{k}"
                    row[col] = v
                    if col not in metrics:
                        metrics.append(col)
        rows.append(row)
    if not rows:
        raise InputError(f"atomsieve sweep --report {name}: no experiment named {name}-<i> in `dvc exp show`")
    return ["experiment", *keys, *metrics], rows


RECOMMENDATION = "outputs/recommend/recommendation.csv"


def selections(name: str, data: dict[str, dict], recorded: list[str] | None = None) -> dict[str, list[str] | None]:
    """``{experiment: [source quantity, ...]}`` of the configurations each experiment of
    the sweep recommends computing, read from its commit (None where it has none)."""
    out = {}
    for exp in members(name, data, recorded):
        rev = data[exp].get("rev")
        proc = subprocess.run(["git", "show", f"{rev}:{RECOMMENDATION}"], capture_output=True, text=True)
        if not rev or proc.returncode:
            out[exp] = None
            continue
        rows = csv.DictReader(io.StringIO(proc.stdout))
        out[exp] = [f"{r['source']} {r['quantity']}" for r in rows if r.get("recommendation") == "compute"]
    return out


def changed(metrics: list[str], rows: list[dict]) -> list[str]:
    """The metrics whose shown value (4 significant digits) differs between the rows."""
    return [c for c in metrics if len({cell(r.get(c)) for r in rows}) > 1]


def report(name: str, keys: list[str] | None = None) -> Path:
    """Write outputs/sweeps/<name>/ from ``dvc exp show --json``; the folder."""
    from pipeline.core import plots

    folder = OUT / name
    record = _record(folder)
    if keys is None and "keys" not in record:
        raise InputError(f"{folder}/keys.json: no record of sweep {name!r} (run `atomsieve sweep` first)")
    keys = keys if keys is not None else record["keys"]
    data = experiments_by_name()
    columns, rows = table(name, keys, data, record.get("experiments"))
    metrics = columns[1 + len(keys):]
    numeric = [c for c in changed(metrics, rows)
               if any(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) for r in rows)]
    pairs = [(c, k) for c in numeric for k in keys]  # a plot of each changed metric against each swept key
    names = ["report.md", "results.csv", "keys.json", *[f"{_file(c)}__vs__{_file(k)}.png" for c, k in pairs]]
    chosen = selections(name, data, record.get("experiments"))
    with staged([folder / n for n in names]) as paths:
        paths[0].write_text(_markdown(name, keys, columns, rows, list(zip([c for c, _ in pairs], names[3:])), chosen))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        paths[1].write_text(buf.getvalue())
        paths[2].write_text(json.dumps({"keys": keys, "experiments": [r["experiment"] for r in rows]}))
        for path, (col, key) in zip(paths[3:], pairs):
            order = [key, *[k for k in keys if k != key]]
            plots.sweep(order, [{k: r.get(k) for k in keys} for r in rows], [r.get(col) for r in rows], col, path)
    return folder


def _record(folder: Path) -> dict:
    """The sweep's record, keys.json: its swept keys and experiments (an older record:
    the keys alone); empty before the sweep has queued anything."""
    try:
        data = json.loads((folder / "keys.json").read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise InputError(f"{folder}/keys.json: not a sweep's record ({err}); run `atomsieve sweep` again") from err
    return {"keys": data} if isinstance(data, list) else data


def write_record(name: str, keys: list[str], experiments: list[str]) -> None:
    folder = OUT / name
    with staged([folder / "keys.json"]) as (path,):
        path.write_text(json.dumps({"keys": keys, "experiments": experiments}))


def _file(column: str) -> str:
    return column.replace(":", "__").replace("/", "_").replace(".", "_")


def _markdown(name: str, keys, columns, rows, plotted: list[tuple[str, str]],
              chosen: dict[str, list[str] | None]) -> str:
    """The report: what changed, which configurations each experiment recommends, every
    metric, and the plots of the metrics that changed (``plotted``: (metric, png))."""
    metrics = columns[1 + len(keys):]
    differ = changed(metrics, rows)
    lines = [f"# Sweep `{name}`", "", f"Swept: {', '.join(f'`{k}`' for k in keys) or '(nothing)'}; {len(rows)} "
             "experiments (`dvc exp show` and `atomsieve show` list them). Metrics are named `stage:key`; a metric "
             "counts as changed where its value to 4 significant digits does.", "", "## What changed", ""]
    if differ:
        lines += [f"{len(differ)} of {len(metrics)} metrics differ between the experiments:", "",
                  *markdown_table(["experiment", *keys, *differ], rows)]
    else:
        lines += [f"No metric differs between the experiments: none of the {len(metrics)} metrics depends on "
                  f"{', '.join(f'`{k}`' for k in keys)} over the values swept."]
    lines += ["", "## Which configurations to compute", "", *_selection_lines(rows, keys, chosen)]
    lines += ["", "## Every metric", "", *markdown_table(columns, rows), "", "## Plots", ""]
    lines += [f"![{p}]({p})" for _, p in plotted] or ["(no metric changed)"]
    lines.append("")
    return "\n".join(lines)


def _selection_lines(rows: list[dict], keys: list[str], chosen: dict[str, list[str] | None]) -> list[str]:
    """Each experiment's recommended configurations, those common to all, and the overlap
    (shared over either's) of every pair."""
    have = {e: set(v) for e, v in chosen.items() if v is not None}
    if not have:
        return ["No experiment of the sweep has a recommendation (outputs/recommend/recommendation.csv) in its commit."]
    every, some = set.intersection(*have.values()), set.union(*have.values())
    lines = [f"{len(every)} configurations are recommended by every experiment, {len(some)} by at least one.", "",
             *markdown_table(["configuration", *have], [{"configuration": c, **{e: "✓" if c in s else "" for e, s in
                                                                              have.items()}} for c in sorted(some)]),
             "", "Overlap of the recommendations (shared over either's):", ""]
    overlap = [{"experiment": a, **{b: len(have[a] & have[b]) / max(len(have[a] | have[b]), 1) for b in have}}
               for a in have]
    return lines + markdown_table(["experiment", *have], overlap)


def sweep(overrides: list[str], name: str, jobs: int, conf_dir: Path, recorded: list[str],
          timeout: float) -> Path:
    combos = expand(overrides)
    check_all(combos, conf_dir, recorded)
    names = queue(name, combos)
    write_record(name, swept_keys(overrides), names)
    try:
        return finish(name, names, jobs, timeout)
    except KeyboardInterrupt:
        raise Interrupted(abandon(name, names)) from None


def finish(name: str, names: list[str], jobs: int, timeout: float) -> Path:
    print(f"queued {len(names)} experiments {names[0]} .. {names[-1]}; running them on {jobs} workers",
          file=sys.stderr)
    status = run_queue(names, jobs, timeout)
    failed = sorted(n for n, s in status.items() if s != "Success")
    folder = report(name)
    if failed:
        raise InputError(f"atomsieve sweep: experiments {failed} failed (`dvc queue logs <name>` says why); "
                         f"the report in {folder} shows the others")
    return folder
