"""Potentials (KIM through kimpy, ASE calculators, LAMMPS as a cross-check), their
parameters and transforms, derivatives with respect to them, and target properties of
crystals. Imports only pipeline.core and pipeline.atoms."""
