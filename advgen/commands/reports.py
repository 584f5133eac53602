"""CLI subcommands for the reports issue (placeholder until that work lands)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this group's subcommands to the advgen parser."""
