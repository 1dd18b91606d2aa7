"""The package version, in a leaf module: whatever needs it (the status file, ``--version``)
imports this rather than the package root, whose ``main`` reaches the CLI."""

__version__ = "0.1.0"
