"""Subcommand groups, each registering its parsers on the `advgen` CLI (kept thin: parse, call API, print)."""
