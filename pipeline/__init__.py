"""atomsieve: choose which atomic configurations belong in an interatomic potential's training set."""

__version__ = "0.1.0"
