"""`--help` that teaches: every option says what it does and shows its default.

argparse's ArgumentDefaultsHelpFormatter appends "(default: X)" to every option; this one skips
it where it would mislead or repeat: flags (off unless given), required options, defaults of None
whose meaning the help text already states ("default: under outputs/").
"""

from __future__ import annotations

import argparse


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown for every option with a real default; wide enough for the option names."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=100)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        flag = action.nargs == 0  # store_true / store_false / help / version
        if flag or action.required or not action.option_strings or action.default is None or "default" in text:
            return text
        if action.default is argparse.SUPPRESS:
            return text
        return text + " (default: %(default)s)"


def apply(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Use `Formatter` on the parser and every subcommand parser below it."""
    parser.formatter_class = Formatter
    for action in parser._actions:  # argparse keeps subparsers here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                apply(sub)
    return parser


def undocumented(parser: argparse.ArgumentParser, prefix: str = "advgen") -> list[str]:
    """Options without help text, or whose help shows no default though they have one (for tests)."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += undocumented(sub, f"{prefix} {name}")
        elif not action.option_strings and action.help != argparse.SUPPRESS:
            if not action.help:
                out.append(f"{prefix} {action.dest}: no help text")
        elif action.help != argparse.SUPPRESS:
            name = f"{prefix} {'/'.join(action.option_strings)}"
            if not action.help:
                out.append(f"{name}: no help text")
            elif action.nargs != 0 and not action.required and action.default is None and "default" not in action.help:
                out.append(f"{name}: default None, and the help does not say what that means")
    return out
