"""`--help` teaches: every option of every subcommand has help text and shows its default."""

from __future__ import annotations

import argparse
import re

import pytest

from advgen.cli.helpfmt import undocumented
from advgen.cli.main import build_parser, main


def test_every_option_is_documented():
    assert undocumented(build_parser()) == []


def _subcommands() -> list[str]:
    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_help_shows_defaults(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    for action in sub._actions:
        if (
            action.option_strings
            and action.nargs != 0
            and action.default not in (None, argparse.SUPPRESS)
            and not action.required
        ):
            assert f"(default: {action.default})" in text or "default" in (action.help or ""), (command, action.dest)


def test_seed_and_batch_size_help(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert re.search(r"--seed SEED .*seed of every random choice.*\(default: 0\)", text)
    assert re.search(r"--batch-size BATCH_SIZE .*prompts per model forward.*\(default: 32\)", text)


def test_the_cli_choices_are_the_codes_own() -> None:
    """The CLI takes its choices from core.options (torch-free); the modules that act on them agree."""
    from advgen.attacks import divergence
    from advgen.circuits import ablation, discovery_roles
    from advgen.core import options
    from advgen.jobs import attack
    from advgen.model import backends
    from advgen.outputs import pipeline

    assert tuple(discovery_roles.NM_PATHS) == options.NM_PATHS
    assert ablation.ABLATIONS == options.ABLATIONS and backends.BACKENDS == options.BACKENDS
    assert attack.OBJECTIVES == options.OBJECTIVES and pipeline.MAX_BATCH == options.MAX_BATCH
    assert set(divergence.ABLATIONS) <= set(ablation.ABLATIONS)
