"""Hydra imports every module under ``hydra_plugins`` when it starts; DVC puts the
repository root on the plugin path. Importing this registers atomsieve's schemas."""

from stages.schema import register

register()
