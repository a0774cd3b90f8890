"""Hydra imports every module under ``hydra_plugins`` when it starts; DVC puts the
repository root on the plugin path. Importing this registers atomsieve's schemas and
installs its composition rules (stages/overrides.py): the project's recorded
overrides on every route, and dict-valued overrides that replace."""

from stages.overrides import install
from stages.schema import register

register()
install()
