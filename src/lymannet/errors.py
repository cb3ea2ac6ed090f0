"""One exception type for bad input, so every entry point can print one clear line and exit non-zero."""

from __future__ import annotations

from pathlib import Path


class LymannetError(Exception):
    """Bad input or configuration. The message names the file (if any) and the problem."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class InputFileError(LymannetError):
    """A data file that cannot be used as it is (missing HDU, truncated, wrong shapes, ...)."""


class ConfigError(LymannetError):
    """A configuration that cannot be run (unknown names, invalid values, ...)."""
