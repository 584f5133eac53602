"""advgen's version, read from one place: the installed package's metadata (pyproject.toml's `version`).

Manifests, reports and `advgen --version` all call version(), so the number cannot disagree between them.
"""

from __future__ import annotations

from importlib import metadata

UNKNOWN = "0+unknown"
"""The version when advgen runs from a source tree that was never installed (no metadata to read)."""


def version() -> str:
    """The installed distribution's version, e.g. "0.1.0"; UNKNOWN when advgen is not installed."""
    try:
        return metadata.version("advgen")
    except metadata.PackageNotFoundError:
        return UNKNOWN
