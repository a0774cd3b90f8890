"""DVC stage modules: one short script per stage of dvc.yaml.

Ctrl-C at a terminal reaches every process of the run, so a stage may be interrupted
anywhere, even while it imports. Here, before any stage module runs, an uncaught
KeyboardInterrupt is made one line instead of a traceback; the process still ends by
the interrupt (DVC sees it, and records nothing), and a stage's outputs are written all
or none (pipeline.core.atomic), so nothing half-written is left.
"""

import sys


def _one_line_on_interrupt(kind, value, traceback, _default=sys.excepthook) -> None:
    if issubclass(kind, KeyboardInterrupt):
        name = sys.argv[0].rsplit("/", 1)[-1].removesuffix(".py") if sys.argv and sys.argv[0] else "stage"
        sys.stderr.write(f"interrupted: {name} stopped by Ctrl-C before it finished; nothing of its outputs was "
                         "written; run `dvc repro` again\n")
        return
    _default(kind, value, traceback)


sys.excepthook = _one_line_on_interrupt
