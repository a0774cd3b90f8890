"""Configurations: reading and checking datasets, image identity, per-atom descriptors.
Imports only pipeline.core."""
