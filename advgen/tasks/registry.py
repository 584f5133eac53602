"""Built-in tasks by name, and `resolve_task`: a built-in name or a YAML file, for every command's --task."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from advgen.core.manifest_doc import Manifest
from advgen.core.types import Role
from advgen.tasks.loader import load_task
from advgen.tasks.spec import AnswerRule, Corruption, RoleSpec, Task, TaskError

DATA = Path(__file__).parent / "data"
DEFAULT_TASK = "ioi"

IOI_ROLES = (
    RoleSpec(Role.PREVIOUS_TOKEN.value, "S1+1", "S1", "copies the previous token (acts at S1+1)"),
    RoleSpec(Role.DUPLICATE_TOKEN.value, "S2", "S1", "attends from a repeated name to its earlier copy"),
    RoleSpec(Role.INDUCTION.value, "S2", "S1+1", "attends from S2 to the token after S1"),
    RoleSpec(Role.S_INHIBITION.value, "END", "S2", "moves 'S is duplicated' to END"),
    RoleSpec(Role.NAME_MOVER.value, "END", "IO", "attends from END to IO and copies it"),
    RoleSpec(Role.NEGATIVE_NAME_MOVER.value, "END", "IO", "attends to names and writes against them"),
    RoleSpec(Role.BACKUP_NAME_MOVER.value, "END", "IO", "takes over when the name movers are knocked out"),
)


def ioi_task() -> Task:
    """IOI as a Task record. Its engines are IOI's own (templates in packs, ABBA/BABA, ABC twins); this record
    says what they do in the interface's terms, so documents and circuits name the task the same way."""
    return Task(
        name="ioi",
        description="Indirect object identification: 'When Mary and John went to the store, John gave a drink to' -> ' Mary'.",
        templates=(),
        lexicons={"names": "names"},
        slots={"IO": "names", "S": "names"},
        answer=AnswerRule("IO"),
        foil=AnswerRule("S"),
        metric="logit_diff",
        corrupt=Corruption("S", 2),
        roles=IOI_ROLES,
        source="builtin:ioi",
        engine="ioi",
    )


def builtin_task_names() -> tuple[str, ...]:
    return (DEFAULT_TASK, *sorted(p.stem for p in DATA.glob("*.yaml")))


@cache
def _builtin(name: str) -> Task:
    if name == DEFAULT_TASK:
        return ioi_task()
    t = load_task(DATA / f"{name}.yaml")
    return Task(**{**t.__dict__, "source": f"builtin:{name}"})


def resolve_task(spec: str | Path | Task | None) -> Task:
    """A Task, a built-in name ("ioi", "induction", ...) or a YAML task file; None is IOI."""
    if isinstance(spec, Task):
        return spec
    if spec is None:
        return _builtin(DEFAULT_TASK)
    s = str(spec)
    if s in builtin_task_names():
        return _builtin(s)
    p = Path(s)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return load_task(p)
    raise TaskError(f"--task {s!r} is neither a built-in task ({', '.join(builtin_task_names())}) nor a YAML task file")


def task_of_manifest(man: Manifest, where: str) -> Task:
    """The task a run directory's manifest records (a built-in by name, a YAML task by its file): `settings.task`,
    either shape (`Manifest.task_ref`); IOI when it records none."""
    t = man.task_ref
    if t is None:
        return _builtin(DEFAULT_TASK)
    src = t.source or t.name or ""
    spec = src.removeprefix("builtin:") if src.startswith("builtin:") else src
    try:
        return resolve_task(spec)
    except TaskError as e:
        raise TaskError(f"{where}: the run's task {t.name!r} cannot be read again ({e})") from None
