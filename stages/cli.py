"""The ``atomsieve`` command.

- ``atomsieve compose [OVERRIDES...]``: params.yaml from conf/ plus Hydra overrides,
  composed exactly as ``dvc exp run -S`` composes it, then checked as every stage will
  check it. The overrides are added to those recorded in conf/overrides.yaml (an
  override of a key already recorded replaces that one only), which every later
  composition reads (``dvc exp run -S``, queued experiments): commit it. It says what
  it changed, in the recorded overrides and in params.yaml. Without overrides,
  recompose with the recorded ones; ``--reset`` forgets them all (then applies any
  given), ``--forget KEY`` forgets one key's, ``--show`` prints them; ``--out FILE``
  (not params.yaml) writes a preview and records nothing.
- ``atomsieve experiment NAME [--queue]``: a preset of conf/experiment/ (a published
  study) as the named DVC experiment NAME: ``dvc exp run -n NAME -S +experiment=NAME``
  (every stage, so that no metric of another config is shown beside it), on top of the
  recorded overrides; ``dvc exp show`` lists the presets side by side.
- ``atomsieve sweep OVERRIDES... [--jobs N] [--name PREFIX]``: Hydra's sweep syntax as
  named DVC experiments, run on N queue workers, then a report in
  outputs/sweeps/PREFIX/; ``atomsieve sweep --report PREFIX`` draws it again
  (:mod:`stages.sweep`).
- ``atomsieve show [PREFIX] [--all]``: the experiments side by side, only what differs
  between them, in blocks that fit 120 columns (:mod:`stages.show`).
- ``atomsieve match --fims F --target T --out DIR [matching.KEY=VALUE...]``: information
  matching on FIM files a user has (Orchestrator's, a .npz/.npy, atomsieve's own),
  writing what the match stage writes; ``atomsieve select`` alike (:mod:`stages.brought`).
- ``atomsieve store info|gc|pack``: inspect and maintain the content-addressed store.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from pipeline.core.atomic import temp_name, write_bytes
from pipeline.core.errors import AtomsieveError, ConfigError, Interrupted
from pipeline.core.store import Store
from stages import overrides as recorded
from stages.common import load_config
from stages.schema import StoreConfig, register
from stages.validate import files, validate


def compose(overrides: list[str], out: Path, conf_dir: Path, record: bool = True) -> None:
    """Write ``out`` from ``conf_dir/config.yaml`` and ``overrides``, atomically, after
    checking it as the stages will; with ``record``, also record ``overrides`` in
    ``conf_dir/overrides.yaml`` for every later composition."""
    import yaml
    from dvc.utils.hydra import compose_and_dump
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register()
    recorded.install()
    tmp = temp_name(out).with_suffix(".yaml")  # DVC picks the dumper by suffix
    for override in overrides:
        twice = recorded.duplicate_keys(override)
        if twice:
            raise ConfigError(f"atomsieve compose: {override!r} gives the key {twice[0]!r} twice (Hydra would keep the "
                              "last silently); give it once")
    try:
        with recorded.ignoring_recorded():
            compose_and_dump(tmp, str(conf_dir.resolve()), None, "config", str(conf_dir.resolve().parent),
                             list(overrides))
        validate(load_config(tmp, name=f"{conf_dir} with {list(overrides)}"))
        if record:
            write_bytes(conf_dir / recorded.FILE, recorded.text(overrides).encode())
        tmp.replace(out)
    except (HydraException, OmegaConfBaseException) as err:
        cause = f" ({' '.join(str(err.__cause__).split())})" if err.__cause__ else ""
        raise ConfigError(f"{conf_dir}: cannot compose with {overrides}: {err}{cause}") from err
    except yaml.YAMLError as err:  # a conf/ file that is not YAML, or holds a tag or a key twice
        raise ConfigError(f"{conf_dir}: a config file is not valid YAML: {' '.join(str(err).split())}") from err
    finally:
        tmp.unlink(missing_ok=True)


def untracked(paths: list[Path]) -> list[Path]:
    """Those of ``paths`` that git does not track and no ``.dvc`` file covers (none
    outside a git checkout)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--", *map(str, paths)], capture_output=True, text=True,
                                check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return []
    tracked = {Path(p).resolve() for p in listed}
    covered = lambda p: any((q.parent / f"{q.name}.dvc").exists() for q in (p, *p.parents))  # noqa: E731
    return [p for p in paths if p.resolve() not in tracked and not covered(p.resolve())]


def store_path(params: Path) -> Path:
    return Path(load_config(params).store.path if params.exists() else StoreConfig().path)


def experiment(name: str, queue: bool, conf_dir: Path) -> int:
    """Run (or queue) the preset ``name`` as the DVC experiment of that name; its exit code."""
    presets = sorted(p.stem for p in (conf_dir / "experiment").glob("*.yaml"))
    if name not in presets:
        raise ConfigError(f"atomsieve experiment: expected one of {presets} (conf/experiment/), got {name!r}")
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:  # refuse a preset that does not compose or validate, before DVC
        compose([*(recorded.read(conf_dir) or []), f"+experiment={name}"], Path(scratch) / "params.yaml", conf_dir,
                record=False)
    # the whole pipeline, not only learn: every metric dvc exp show lists must be of this preset's params
    command = ["dvc", "exp", "run", "-n", name, "-S", f"+experiment={name}", *(["--queue"] if queue else [])]
    print("running: " + " ".join(command), file=sys.stderr)
    params = Path("params.yaml")
    before = params.read_bytes() if params.exists() else None
    child = subprocess.Popen(command, preexec_fn=die_with_parent)
    try:
        return child.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to both: DVC stops and cleans up its run
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.terminate()
            child.wait()
        if before is not None and params.read_bytes() != before:  # the preset's params DVC staged
            write_bytes(params, before)
        raise Interrupted(f"atomsieve experiment {name}: interrupted; DVC stopped the run and recorded nothing "
                          "(`dvc exp show` lists no such experiment), and params.yaml is as it was") from None


def die_with_parent() -> None:
    """In a child: be killed when atomsieve dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG),
    so that no `dvc exp run` is left running on its own."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except OSError:  # not Linux: no such call
        pass


def compose_command(given: list[str], out: Path, conf_dir: Path, reset: bool, forget: list[str],
                    show: bool) -> None:
    """``atomsieve compose``: the recorded overrides updated by ``given`` (or replaced, with
    ``reset``; less the keys of ``forget``), params.yaml composed from them, and what
    changed said on stderr."""
    try:
        before = recorded.read(conf_dir) or []
    except ConfigError:
        if not reset:
            raise
        before = []  # --reset writes a damaged record anew
    if show:
        print("\n".join(before) if before else f"(no overrides recorded in {conf_dir / recorded.FILE})")
        return
    preview = out.resolve() != Path("params.yaml").resolve()
    if not preview:
        refuse_while_dvc_runs(Path(".dvc/tmp/lock"))
        check_lock_file(Path("dvc.lock"))
    unknown = [k for k in forget if k not in {recorded.key_of(o) for o in before}]
    if unknown:
        raise ConfigError(f"atomsieve compose --forget: no recorded override of {unknown}; recorded: {before}")
    kept = [o for o in ([] if reset else before) if recorded.key_of(o) not in forget]
    overrides = recorded.combined(kept, given)
    old = _flat(load_config(out)) if out.exists() and not preview else None
    compose(overrides, out, conf_dir, record=not preview)
    cfg = load_config(out)
    say = (lambda line: print(line, file=sys.stderr))  # noqa: E731
    if preview:
        say(f"wrote {out} (a preview: nothing recorded in {conf_dir / recorded.FILE}, params.yaml unchanged)")
    else:
        for line in recorded.changes(before, overrides):
            say(line)
    if old is not None:
        new = _flat(cfg)
        changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        say(f"{out}: {len(changed)} value{'s' if len(changed) != 1 else ''} changed" + (":" if changed else ""))
        for key in changed:
            say(f"  {key}: {old.get(key)!r} -> {new.get(key)!r}")
    for path in untracked(files(cfg)):
        say(f"warning: {path} is not tracked by git or DVC: `dvc repro` reads it, but queued and --temp experiments "
            f"will not see it; run `git add {path}` (or `dvc add {path}`) and commit")


def refuse_while_dvc_runs(lock: Path) -> None:
    """ConfigError while a DVC command holds the repository's lock (``.dvc/tmp/lock``,
    flock'ed by DVC for the whole of `dvc repro` or `dvc exp run`): a change now would be
    recorded in dvc.lock as if the running stages had used it."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        raise ConfigError("atomsieve compose: a DVC command (dvc repro, dvc exp run) is running in this project and "
                          "holds its lock; compose when it has finished, or its stages would be recorded as having "
                          "used the new params") from None
    finally:
        os.close(fd)


def check_lock_file(path: Path) -> None:
    """A dvc.lock that is not YAML (a write cut short) named, with the command that restores it."""
    import yaml

    try:
        yaml.safe_load(path.read_text()) if path.exists() else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path} is damaged{where}, most likely by a DVC command cut short while writing it; "
                          f"restore it with `git checkout -- {path}`, then `dvc repro` re-runs what changed") from None


def _flat(cfg) -> dict:
    """``{dotted.key: value}`` of a config's leaves."""
    out = {}

    def walk(node, prefix):
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out[prefix] = node
    walk(asdict(cfg), "")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="atomsieve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compose", help="write params.yaml from conf/ and Hydra overrides")
    p.add_argument("overrides", nargs="*", help="e.g. 'dataset.paths=[a.extxyz]' runtime.workers=2 "
                   "(none: the ones recorded in conf/overrides.yaml)")
    p.add_argument("--reset", action="store_true", help="forget every recorded override (then apply those given)")
    p.add_argument("--forget", metavar="KEY", action="append", default=[],
                   help="forget the recorded override of KEY (a key or config group); repeatable")
    p.add_argument("--show", action="store_true", help="print the recorded overrides and stop")
    p.add_argument("--out", type=Path, default=Path("params.yaml"),
                   help="where to write (default params.yaml; any other file is a preview: nothing is recorded)")
    p.add_argument("--conf", type=Path, default=Path("conf"))
    p = sub.add_parser("experiment", help="run a preset of conf/experiment/ as a named DVC experiment")
    p.add_argument("name", help="a file of conf/experiment/, without .yaml")
    p.add_argument("--queue", action="store_true", help="queue it (run later with `dvc exp run --run-all`)")
    p.add_argument("--conf", type=Path, default=Path("conf"))
    p = sub.add_parser("sweep", help="queue a Hydra sweep as named DVC experiments, run them, report")
    p.add_argument("overrides", nargs="*", help="e.g. 'matching.weight_tol=1e-3,1e-4' 'dataset.seed=range(0,4)'")
    p.add_argument("--jobs", "-j", type=int, default=1, help="queue workers (DVC experiments run at once)")
    p.add_argument("--name", help="experiment name prefix (default: sweep-<time>)")
    p.add_argument("--report", metavar="NAME", help="only draw the report of the sweep NAME again")
    p.add_argument("--timeout", type=float, default=6 * 3600, help="seconds to wait for the experiments")
    p.add_argument("--conf", type=Path, default=Path("conf"))
    p = sub.add_parser("show", help="experiments side by side: what differs between them, 120 columns wide")
    p.add_argument("prefix", nargs="?", help="only experiments whose name starts with this (e.g. a sweep's name)")
    p.add_argument("--all", action="store_true", help="every metric, not only those that differ")
    p.add_argument("--width", type=int, default=120)
    p = sub.add_parser("match", help="information matching on FIM files you have (Orchestrator's, .npz, .npy)")
    p.add_argument("--fims", type=Path, required=True,
                   help="candidate FIMs: an extxyz (atomsieve's or Orchestrator's) or a .npz with ids, fims")
    p.add_argument("--target", type=Path, required=True, help="target FIM: a json (atomsieve's or Orchestrator's) or .npy")
    p.add_argument("--out", type=Path, required=True, help="folder for the outputs (written all or none)")
    p.add_argument("overrides", nargs="*", help="matching.KEY=VALUE, e.g. matching.solver=SDPA "
                   "'matching.solver_options={max_iter: 100}'")
    p.add_argument("--params", type=Path, help="a YAML whose matching section sets the options (then the overrides)")
    p.add_argument("--log-level", default="INFO")
    p = sub.add_parser("select", help="exactly K configurations from FIM files you have, by annealing")
    p.add_argument("--fims", type=Path, required=True, help="candidate FIMs, as for atomsieve match")
    p.add_argument("--target", type=Path, required=True, help="target FIM, as for atomsieve match (the objective with "
                   "selection.objective=target; the matching-top-K baseline always)")
    p.add_argument("--out", type=Path, required=True, help="folder for the outputs (written all or none)")
    p.add_argument("--descriptors", type=Path, help="atomsieve's descriptors.npz for the frames (diversity, FPS)")
    p.add_argument("overrides", nargs="*", help="selection.KEY=VALUE, matching.KEY=VALUE, quests.bandwidth=H; "
                   "e.g. selection.budget=5")
    p.add_argument("--params", type=Path, help="a YAML whose selection, matching and quests sections set the options")
    p.add_argument("--log-level", default="INFO")
    p = sub.add_parser("store", help="inspect or maintain the content-addressed store")
    p.add_argument("action", choices=["info", "gc", "pack"])
    p.add_argument("--path", type=Path, help="store root (default: store.path of --params)")
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    try:
        if args.command == "compose":
            compose_command(args.overrides, args.out, args.conf, args.reset, args.forget, args.show)
            return
        if args.command == "sweep":
            from stages import sweep

            if args.report:
                print(sweep.report(args.report) / "report.md")
                return
            if args.jobs < 1:
                raise ConfigError(f"atomsieve sweep: --jobs expected 1 or more, got {args.jobs}")
            name = args.name or time.strftime("sweep-%Y%m%d-%H%M%S")
            folder = sweep.sweep(args.overrides, name, args.jobs, args.conf, recorded.read(args.conf) or [], args.timeout)
            print(folder / "report.md")
            return
        if args.command == "show":
            from stages.show import show

            print(show(args.prefix, args.all, args.width), end="")
            return
        if args.command == "match":
            from stages.brought import match_files

            match_files(args.fims, args.target, args.out, args.overrides, args.log_level, args.params)
            print(args.out / "weights.json")
            return
        if args.command == "select":
            from stages.brought import select_files

            select_files(args.fims, args.target, args.out, args.descriptors, args.overrides, args.log_level,
                         args.params)
            print(args.out / "summary.json")
            return
        if args.command == "experiment":
            raise SystemExit(experiment(args.name, args.queue, args.conf))
        store = Store(args.path or store_path(args.params))
        store.check_is_store(args.action)
        result = {"info": lambda: asdict(store.info()), "gc": store.gc,
                  "pack": lambda: {"packed_entries": store.pack()}}[args.action]()
        print(json.dumps(result, indent=2))
    except Interrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        print("interrupted: nothing was changed", file=sys.stderr)
        raise SystemExit(130) from None
    except AtomsieveError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
