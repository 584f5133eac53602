"""Writer locks that can be judged stale: who holds one, and whether that writer can still be running.

A lock records the writer's host, pid, process start time (field 22 of /proc/<pid>/stat, clock
ticks since boot) and boot id (/proc/sys/kernel/random/boot_id). A pid alone is not enough: after
a reboot, or in a container where every run is pid 1, a live pid says nothing about the writer.
A lock is *live* only when it was written on this host, in this boot, and its pid is alive with
the same start time. Anything else (process gone, pid reused, other boot, other host, unreadable
lock, a lock cleared by `advgen unlock`) is *stale*: a writer may take the directory over (the
same run, or another with `--overwrite`), and readers still refuse it, because a stale lock means
an interrupted writer. A lock from an advgen before this module (pid only) whose pid is alive cannot
be judged; it counts as live, and `advgen unlock DIR` clears it.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgen.core.types import AdvgenError

LOCK = ".advgen.lock"


@dataclass(frozen=True)
class LockState:
    """What a lock file says and whether its writer may still run; `why` is for messages."""

    pid: int | None
    live: bool
    why: str
    own: bool = False
    """Held by this very process (a writer re-entering its own directory)."""


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None where unknown."""
    stat = _read(Path(f"/proc/{pid}/stat"))
    if stat is None:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: fields after the last ')'
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def boot_id() -> str | None:
    return _read(Path("/proc/sys/kernel/random/boot_id"))


def holder(kind: str, identity: str) -> dict[str, Any]:
    """This process as a lock's content."""
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "start": start_time(pid),
        "boot": boot_id(),
        "kind": kind,
        "identity": identity,
    }


def read_lock(d: Path, path: Path | None = None) -> dict[str, Any]:
    """The JSON object of `d`'s lock (or of the lock file `path`); {} when missing, unreadable or not an object."""
    try:
        doc = json.loads((path or d / LOCK).read_text(encoding="utf-8"))
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:  # alive, owned by another user
        return True
    except (ProcessLookupError, OverflowError, OSError):
        return False
    return True


def judge(d: Path, path: Path | None = None) -> LockState:
    """Whether the writer that holds `d`'s lock (or the lock file `path`) may still run (rules in the module docstring)."""
    lk = read_lock(d, path)
    pid = lk.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 2**31:
        return LockState(None, False, "the lock names no usable process")
    if lk.get("abandoned"):
        return LockState(pid, False, "the lock was cleared by `advgen unlock`")
    host = lk.get("host")
    if host is not None and host != socket.gethostname():
        return LockState(pid, False, f"the lock was written on host {str(host)[:60]!r}, not this one")
    if lk.get("boot") is not None and boot_id() is not None and lk.get("boot") != boot_id():
        return LockState(pid, False, "the lock was written before this machine last booted")
    if not _alive(pid):
        return LockState(pid, False, f"process {pid} is gone")
    start = lk.get("start")
    if start is not None and start_time(pid) is not None and start != start_time(pid):
        return LockState(pid, False, f"pid {pid} now belongs to another process (started later)")
    own = pid == os.getpid() and (start is None or start == start_time(pid))
    why = f"process {pid} is running" if start is not None else f"pid {pid} is alive (old lock without a start time)"
    return LockState(pid, True, why, own)


def unlock(d: str | Path) -> LockState:
    """Clear `d`'s lock unless its writer provably runs: the lock is kept, marked abandoned.

    Kept, because the directory is still incomplete (readers refuse it and say so); abandoned, so any
    writer may take it over. Returns the state the lock was in; a missing or live lock is an error.
    """
    d = Path(d)
    if not (d / LOCK).is_file():
        raise AdvgenError(f"{d}: no advgen lock ({LOCK}) to clear")
    state = judge(d)
    if state.live and read_lock(d).get("start") is not None:
        raise AdvgenError(f"{d}: {state.why} and holds the lock; wait for it or stop it first")
    doc = {**read_lock(d), "abandoned": True}
    tmp = d / f".advgen.lock.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(doc, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, d / LOCK)
    return state


def acquire(path: Path, kind: str, identity: str, what: str) -> None:
    """Create lock file `path` for this process, atomically and exclusively (a stale one is taken over).

    `what` names the locked thing in the refusal. Written under a temporary name and hard-linked, so a
    lock is never seen without its holder.
    """
    if path.exists():
        state = judge(path.parent, path)
        if state.live and not state.own:
            raise AdvgenError(
                f"{what} is being written by another advgen process ({state.why}); wait for it or choose another path"
            )
        path.unlink(missing_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(holder(kind, identity), sort_keys=True) + "\n", encoding="utf-8")
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise AdvgenError(f"{what} is being written by another advgen process (lock {path}); choose another path") from None
    finally:
        tmp.unlink(missing_ok=True)
