"""DVC stage modules: one short script per stage of dvc.yaml."""
