"""The one error hierarchy of atomsieve.

Every error the library raises on purpose derives from :class:`AtomsieveError`, so
command-line entry points can turn it into a one-line message and a non-zero exit.
Messages name the file, frame and key involved and say what was expected and what
was found.

- :class:`InputError`: a dataset, mask or array file is missing, unreadable or malformed,
  or lacks a required label.
- :class:`LabelConflictError`: two images share a structure but carry different labels.
- :class:`ConfigError`: an option has an unknown name, a wrong type or a value outside
  the allowed set.
- :class:`StoreError`: the content-addressed store cannot be used (e.g. not writable).
- :class:`BackendMissing`: an optional backend (Dask, LAMMPS, ...) is not installed.
- :class:`Interrupted`: the user stopped the work (Ctrl-C); what was done is kept where
  the message says, but the run does not count as finished.
"""


class AtomsieveError(Exception):
    """Base class of every error atomsieve raises on purpose."""


class InputError(AtomsieveError):
    """Bad input data: names the file (and frame or key) and expected versus got."""


class LabelConflictError(InputError):
    """Equal structures with different labels; names both sources."""


class ConfigError(AtomsieveError):
    """Bad configuration: names the key, lists allowed values where there is a set."""


class StoreError(AtomsieveError):
    """The content-addressed store cannot be read or written."""


class BackendMissing(AtomsieveError):
    """An optional backend is not installed; the message says how to install it."""


class Interrupted(AtomsieveError):
    """The user stopped the work; the message says what was kept and how to finish."""


def check_choice(key: str, value: str, allowed) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise :class:`ConfigError`."""
    if value not in allowed:
        raise ConfigError(f"{key}: expected one of {sorted(allowed)}, got {value!r}")
    return value
