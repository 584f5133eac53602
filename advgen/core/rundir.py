"""Run directories as units: one writer at a time, complete or visibly incomplete, never poisoned.

A command that writes a run directory (`generate`, `validate`, `run`, `attack`, `export`) goes
through `writing(out, kind, identity)`:

1. **Refusal rules, before any work** (`check_out`): `out` must not be a file or lie under one; it
   must not hold the command's own input; a non-empty directory is reused only if it holds the
   *same* run (same kind and identity: the settings that determine its files), replaced only with
   `overwrite=True` if it holds another advgen run, and never touched if it is not advgen's.
2. **A lock** (`.advgen.lock`, created exclusively by a hard link, holding the writer's host, pid,
   process start time and boot id: `advgen.core.locks`) refuses a second writer while the first
   runs; a lock whose writer is gone or is another process is stale and taken over. The completion
   marker is removed before the first file is written.
3. **A completion marker** (`.advgen-complete.json`: kind, identity and the sha256 of every file)
   is written last, then the lock is removed. An interrupted writer leaves its lock behind.

Readers call `check_complete(dir)`: a left-over lock (interrupted or still running writer) or a
file that no longer matches the marker is an `AdvgenError`, so report and export never describe a
half-written directory. Directories from advgen versions before the marker (no lock, no marker)
are read as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from advgen.core import locks
from advgen.core.files import atomic_write_text, dumps, read_json
from advgen.core.locks import LOCK
from advgen.core.types import AdvgenError

MARKER = ".advgen-complete.json"
ADVGEN_FILES = ("manifest.json", MARKER, LOCK)
"""Any of these marks a directory as advgen's own (so --overwrite may replace it)."""


class RunDirError(AdvgenError):
    """A run directory that cannot be written or read safely; the message says why and what to do."""


def identity_of(kind: str, settings: Mapping[str, Any]) -> str:
    """A short hash of what determines a run's files: equal identities mean 'the same run'."""
    blob = json.dumps({"kind": kind, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _inside(p: Path, d: Path) -> bool:
    try:
        p.resolve().relative_to(d.resolve())
        return True
    except ValueError:
        return False


def _marker(d: Path) -> dict[str, Any] | None:
    if not (d / MARKER).is_file():
        return None
    try:
        doc = read_json(d / MARKER, "completion marker")
    except AdvgenError as e:
        raise RunDirError(f"{d}: unreadable completion marker ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        raise RunDirError(f"{d / MARKER}: not an advgen completion marker")
    return doc


def _prior(d: Path) -> tuple[Any, Any] | None:
    """(kind, identity) of the run in `d`: from its marker, or from the lock an interrupted writer left."""
    mark = _marker(d)
    if mark is not None:
        return mark.get("kind"), mark.get("identity")
    if (d / LOCK).exists():
        lk = locks.read_lock(d)
        return lk.get("kind"), lk.get("identity")
    return None


def _check_parents(out: Path) -> None:
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is an existing file" if parent == out else f"lies under {parent}, which is a file"
            raise RunDirError(f"--out {out} {where}; choose a directory path")


def check_out(out: Path, kind: str, identity: str, overwrite: bool = False, inputs: Sequence[Path] = ()) -> None:
    """Raise unless writing run directory `out` is safe (rules in the module docstring)."""
    out = Path(out)
    _check_parents(out)
    for src in inputs:
        if _inside(Path(src), out):
            raise RunDirError(f"--out {out} holds this command's own input {src}; write to another directory")
    if not out.exists() or not any(out.iterdir()):
        return
    if (out / LOCK).exists():
        state = locks.judge(out)
        if state.live and not state.own:
            raise RunDirError(
                f"--out {out} is being written by another advgen process ({state.why}); wait for it or "
                f"choose another directory (if it is not advgen: `advgen unlock {out}`)"
            )
    prior = _prior(out)
    if prior == (kind, identity):
        return
    if not any((out / f).exists() for f in ADVGEN_FILES):
        raise RunDirError(
            f"--out {out} is a non-empty directory that advgen did not write; advgen never replaces it, choose a new path"
        )
    if not overwrite:
        what = f"an advgen {prior[0]} directory" if prior else "an advgen directory"
        why = "of another kind" if prior and prior[0] != kind else "of another run (other settings)"
        raise RunDirError(f"--out {out} already holds {what} {why}; pass --overwrite to replace it, or choose a new path")


def _acquire(out: Path, kind: str, identity: str) -> None:
    lock = out / LOCK
    stale = False
    if lock.exists():
        state = locks.judge(out)
        if not state.live or state.own:
            stale = not state.own
            lock.unlink(missing_ok=True)  # left by an interrupted writer (check_out allowed the takeover)
    tmp = out / f".advgen.lock.{os.getpid()}.tmp"
    tmp.write_text(dumps(locks.holder(kind, identity)) + "\n", encoding="utf-8")
    try:
        os.link(tmp, lock)  # atomic and exclusive: a lock is never seen without its pid
    except FileExistsError:
        raise RunDirError(
            f"--out {out} is being written by another advgen process (lock {lock}); choose another directory"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    if stale:  # the dead writer's half-written temporary files (atomic_open's .NAME.XXXX.tmp): ours now, never complete
        for p in out.rglob(".*.tmp"):
            if p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)


def _clear(out: Path, keep: Sequence[str]) -> None:
    for p in out.iterdir():
        if p.name in (LOCK, *keep):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(d: Path, skip_dirs: Sequence[str] = ()) -> dict[str, str]:
    """sha256 of every file under `d` (relative POSIX paths), except the lock, marker and `skip_dirs`."""
    out: dict[str, str] = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d)
        if p.is_dir() or rel.parts[0] in (LOCK, MARKER, *skip_dirs) or rel.name.endswith(".tmp"):
            continue
        out[rel.as_posix()] = sha256_file(p)
    return out


def write_marker(d: Path, kind: str, identity: str, skip_dirs: Sequence[str] = (), only: set[str] | None = None) -> None:
    """The completion marker: sha256 of every file of the run (`only`: just these relative paths)."""
    hashes = file_hashes(d, skip_dirs)
    doc = {"kind": kind, "identity": identity, "files": {k: v for k, v in hashes.items() if only is None or k in only}}
    atomic_write_text(d / MARKER, json.dumps(doc, indent=1, sort_keys=True) + "\n")


@contextmanager
def writing(
    out: str | Path,
    kind: str,
    identity: str,
    overwrite: bool = False,
    inputs: Sequence[Path] = (),
    keep: Sequence[str] = (),
) -> Iterator[Path]:
    """Hold `out` for one writer; on success write the completion marker and release the lock.

    `keep` names entries (e.g. an attack's `journal`) that survive a replacement and are not hashed.
    On an error after a file was written the lock stays, so readers see the directory as incomplete;
    on an error before any write the directory is left as it was (an empty new one is removed).
    """
    out = Path(out)
    check_out(out, kind, identity, overwrite, inputs)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create --out {out}: {e.strerror}") from None
    same = _prior(out) == (kind, identity)
    _acquire(out, kind, identity)
    old_marker = (out / MARKER).read_bytes() if same and (out / MARKER).is_file() else None
    (out / MARKER).unlink(missing_ok=True)
    if not same:
        _clear(out, keep)
    before = _snapshot(out)
    try:
        yield out
    except BaseException:
        if _snapshot(out) == before:  # failed before writing anything: leave the directory as it was
            if old_marker is not None:
                (out / MARKER).write_bytes(old_marker)
            (out / LOCK).unlink(missing_ok=True)
            if created and not any(out.iterdir()):
                out.rmdir()
        raise
    # the run's files: written now, or listed by the same run's old marker; never a file added beside
    # the run by someone else (e.g. a report.html), which may change without making the run incomplete
    now = _snapshot(out)
    ours = {k for k, v in now.items() if before.get(k) != v} | (set(_marker_files(old_marker)) & set(now))
    write_marker(out, kind, identity, keep, only=ours)
    (out / LOCK).unlink(missing_ok=True)


def _marker_files(raw: bytes | None) -> list[str]:
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError:
        return []
    files = doc.get("files") if isinstance(doc, dict) else None
    return [str(k) for k in files] if isinstance(files, dict) else []


def _snapshot(d: Path) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file under `d` except the lock: tells whether a writer wrote anything."""
    return {
        p.relative_to(d).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in d.rglob("*")
        if p.is_file() and p.name != LOCK
    }


def check_complete(d: str | Path) -> None:
    """Raise if `d` was left half-written or changed after its writer finished."""
    d = Path(d)
    if (d / LOCK).exists():
        st = locks.judge(d)
        state = "is still being written" if st.live else "was left incomplete by an interrupted writer"
        raise RunDirError(f"{d} {state} ({st.why}; lock {LOCK}); rerun the command that writes it")
    mark = _marker(d)
    if mark is None:
        return
    for rel, digest in sorted(mark["files"].items()):
        p = d / str(rel)
        if not p.is_file():
            raise RunDirError(f"{d} is incomplete: {rel} is missing (listed in {MARKER}); rerun the command that writes it")
        if sha256_file(p) != digest:
            raise RunDirError(f"{d} is inconsistent: {rel} changed after the run finished (not the file {MARKER} records)")
