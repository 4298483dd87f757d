"""The package version (read by the build backend and by checkpoints)."""

__version__ = "0.1.0.dev0"
