"""`--task`, shared by every command (one definition): a built-in task name or a YAML task file."""

from __future__ import annotations

import argparse


def add_task_arg(p: argparse.ArgumentParser) -> None:
    from advgen.tasks.registry import builtin_task_names

    p.add_argument(
        "--task",
        default="ioi",
        help=f"the behaviour: a built-in task ({', '.join(builtin_task_names())}) or a YAML task file (docs/tasks.md)",
    )
