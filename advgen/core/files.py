"""Write and read files atomically and defensively: the bottom layer every stage goes through.

Writes: every file is written to a temporary name in its target directory and renamed into place,
so an interrupted run never leaves a half-written file that looks complete. A target that is a
directory, or a parent that is a file, is an `AdvgenError` naming the path, never a traceback.

Reads: every reader names the file and the *physical* line (blank lines counted, as an editor
shows them) of a problem: bytes that are not UTF-8, a directory given where a file belongs,
malformed JSON, a field of the wrong type.

CSV: every CSV advgen writes neutralises spreadsheet formula injection as OWASP recommends: a
*text* cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`,
so Excel / LibreOffice / Sheets show it as text instead of evaluating it; so does every line of a
cell after a line break (an importer that splits on a bare CR would otherwise start a row with a
live formula). Rows end in CRLF (RFC 4180), which makes the csv module quote every cell holding a
CR or LF, so no line break inside a cell can split a row. Numbers are written as numbers (a
negative logit difference stays `-1.5`); only strings from the data are prefixed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from advgen.core.types import AdvgenError

POSITION_KEYS = ("IO", "S1", "S1+1", "S2", "END")
FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")
"""First characters a spreadsheet may treat as a formula (OWASP CSV injection)."""
_LINE_FORMULA = re.compile(r"(\r\n|\r|\n)(?=[=+\-@\t\r])")
"""A line break inside a cell followed by a formula lead: the next line gets a `'` too."""
CSV_EOL = "\r\n"


def _ensure_dir(d: Path) -> None:
    """mkdir -p with a named error when a component is a file or cannot be created."""
    try:
        d.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise AdvgenError(f"cannot create directory {d}: a component of the path is an existing file") from None
    except OSError as e:
        raise AdvgenError(f"cannot create directory {d}: {e.strerror}") from None


def umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def follow_umask(path: str | Path, directory: bool = False) -> None:
    """Give a temporary file (mkstemp: 600) or directory (mkdtemp: 700) the mode a plain open/mkdir would."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


@contextmanager
def atomic_open(path: str | Path) -> Iterator[TextIO]:
    """A text file written in pieces (streaming) that appears at `path` only when complete."""
    path = Path(path)
    if path.is_dir():
        raise AdvgenError(f"cannot write {path}: it is an existing directory")
    _ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise AdvgenError(f"cannot write {path}: {e.strerror}") from None
    try:
        follow_umask(tmp)  # mkstemp makes 600; a run directory may be served to others
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            yield f
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise AdvgenError(f"cannot write {path}: {e.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """The whole file at once, through the one atomic path (`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def dumps(obj: Any, indent: int | None = None) -> str:
    """Strict JSON: NaN and +-Infinity (no JSON values; jq and browsers reject them) are written `null`."""
    try:
        return json.dumps(obj, ensure_ascii=False, sort_keys=False, indent=indent, allow_nan=False)
    except ValueError:  # a non-finite float somewhere: the rare slow path
        return json.dumps(finite(obj), ensure_ascii=False, sort_keys=False, indent=indent, allow_nan=False)


def finite(obj: Any) -> Any:
    """`obj` with every NaN / +-Infinity float (at any depth) replaced by None, i.e. JSON `null`."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def jsonl_text(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(dumps(r) + "\n" for r in rows)


# ---- CSV ---------------------------------------------------------------------------------------


def csv_cell(v: Any) -> Any:
    """A value as a CSV cell: text (or any line of it) starting with a formula character gets a leading `'` (OWASP)."""
    if not isinstance(v, str):
        return v
    if "\r" in v or "\n" in v:
        v = _LINE_FORMULA.sub(lambda m: m.group(1) + "'", v)
    return "'" + v if v.startswith(FORMULA_LEAD) else v


def csv_rows_text(flat_rows: Iterable[Mapping[str, Any]], cols: Sequence[str]) -> str:
    """CSV of already-flat rows in column order `cols`, every cell neutralised by `csv_cell`."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(cols), lineterminator=CSV_EOL)
    w.writerow({c: csv_cell(c) for c in cols})
    w.writerows({k: csv_cell(v) for k, v in r.items()} for r in flat_rows)
    return buf.getvalue()


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """Flat CSV: positions become pos_<slot> columns, nested values JSON strings."""
    flat = []
    for r in rows:
        d: dict[str, Any] = {}
        for k, v in r.items():
            if k == "positions":
                d.update({f"pos_{s}": v.get(s, "") for s in POSITION_KEYS})
            elif isinstance(v, (dict, list)):
                d[k] = dumps(v)
            else:
                d[k] = v
        flat.append(d)
    cols: list[str] = []
    for d in flat:
        cols += [c for c in d if c not in cols]
    return csv_rows_text(flat, cols)


# ---- readers -----------------------------------------------------------------------------------


def read_bytes(path: str | Path, what: str = "file", limit: int | None = None) -> bytes:
    """The bytes of a file; missing, a directory, unreadable or over `limit` bytes is a named error."""
    path = Path(path)
    if not path.exists():
        raise AdvgenError(f"{what} not found: {path}")
    if path.is_dir():
        raise AdvgenError(f"{path}: is a directory, expected a {what}")
    try:
        if limit is not None and path.stat().st_size > limit:
            raise AdvgenError(f"{path}: {path.stat().st_size:,} bytes; a {what} may have at most {limit:,}")
        return path.read_bytes()
    except OSError as e:
        raise AdvgenError(f"{path}: cannot read {what}: {e.strerror}") from None


def read_text(path: str | Path, what: str = "file", limit: int | None = None) -> str:
    """The UTF-8 text of a file; missing, a directory, unreadable, over `limit` bytes or not UTF-8 is a named error."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise AdvgenError(f"{path}:{line}: not valid UTF-8 (byte {data[e.start]:#04x} at offset {e.start})") from None


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """A JSON document; errors name the file and line."""
    path = Path(path)
    return parse_json(read_text(path, what), str(path), multiline=True)


def parse_json(text: str, where: str, multiline: bool = False) -> Any:
    """json.loads whose every failure is an AdvgenError naming `where` (and the line for a document).

    A string that cannot be written as UTF-8 (a lone surrogate escape such as `"\\ud800"`) is refused
    here, naming its field, so nothing fails when a result is written after a long run.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        detail = f"line {e.lineno}: {e.msg}" if multiline else e.msg
        raise AdvgenError(f"{where}: not valid JSON ({detail})") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise AdvgenError(f"{where}: not usable JSON ({str(e)[:80]})") from None
    except RecursionError:
        raise AdvgenError(f"{where}: JSON nested too deeply") from None
    if _SURROGATE_ESC.search(text):
        field = lone_surrogate_field(doc)
        if field is not None:
            line = f":{_lone_surrogate_line(text)}" if multiline else ""
            raise AdvgenError(f"{where}{line}: field {field!r} holds a lone surrogate, text that cannot be written as UTF-8")
    return doc


_SURROGATE_ESC = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def lone_surrogate_field(doc: Any) -> str | None:
    """The path (`heads[2].name`) of the first key or string in `doc` that is not encodable as UTF-8, or None."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, str) and not _encodable(v):
            return path or "(document)"
        if isinstance(v, dict):
            for k, x in reversed(list(v.items())):
                sub = f"{path}.{k}" if path else str(k)
                if not _encodable(str(k)):
                    return sub
                stack.append((sub, x))
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", x) for i, x in reversed(list(enumerate(v))))
    return None


def _lone_surrogate_line(text: str) -> int | str:
    """Physical line of the first surrogate escape that is not half of a pair."""
    for m in _SURROGATE_ESC.finditer(text):
        v = int(m.group()[2:], 16)
        nxt = text[m.end() : m.end() + 6]
        prev = text[max(0, m.start() - 6) : m.start()]
        paired = (v < 0xDC00 and _SURROGATE_ESC.fullmatch(nxt) and int(nxt[2:], 16) >= 0xDC00) or (
            v >= 0xDC00 and _SURROGATE_ESC.fullmatch(prev) and int(prev[2:], 16) < 0xDC00
        )
        if not paired:
            return text[: m.start()].count("\n") + 1
    return "?"


def type_name(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(v), "null" if v is None else type(v).__name__
    )


def check_fields(row: Mapping[str, Any], types: Mapping[str, tuple[type, ...]], where: str) -> None:
    """Each present field of `types` must have one of its types (bool is not a number)."""
    for k, allowed in types.items():
        if k not in row or row[k] is None and type(None) in allowed:
            continue
        v = row[k]
        ok = isinstance(v, allowed) and not (isinstance(v, bool) and bool not in allowed)
        if not ok:
            want = " or ".join(sorted({type_name(t()) if t is not type(None) else "null" for t in allowed}))
            raise AdvgenError(f"{where}: field {k!r} must be a {want}, got {type_name(v)} {dumps(v)[:60]}")


def _jsonl_row(raw: bytes, where: str, required: Sequence[str], types: Mapping[str, tuple[type, ...]] | None) -> dict[str, Any]:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AdvgenError(f"{where}: not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})") from None
    row = parse_json(line, where)
    if not isinstance(row, dict):
        raise AdvgenError(f"{where}: expected a JSON object per line, got {type_name(row)}")
    missing = [k for k in required if k not in row]
    if missing:
        raise AdvgenError(f"{where}: row is missing field(s) {missing}")
    if types:
        check_fields(row, types, where)
    return row


def read_jsonl_lines(
    path: str | Path,
    required: Sequence[str] = ("text", "io", "s"),
    types: Mapping[str, tuple[type, ...]] | None = None,
    rejected: list[dict[str, Any]] | None = None,
    allow_empty: bool = False,
) -> list[tuple[int, int, dict[str, Any]]]:
    """(row number, physical line, row) per JSONL record; a bad record names file and line.

    Row numbers count records (blank lines skipped), lines count every line. With a `rejected`
    list, a bad record is appended to it as {row, line, reason} instead of raising.
    """
    path = Path(path)
    data = read_bytes(path, "JSONL file")
    rows, k = [], 0
    for n, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        k += 1
        try:
            rows.append((k, n, _jsonl_row(line, f"{path}:{n}", required, types)))
        except AdvgenError as e:
            if rejected is None:
                raise
            rejected.append({"row": k, "line": n, "reason": str(e)})
    if not rows and not allow_empty:
        raise AdvgenError(f"{path}: no rows")
    return rows


def read_jsonl(
    path: str | Path,
    required: Sequence[str] = ("text", "io", "s"),
    types: Mapping[str, tuple[type, ...]] | None = None,
    allow_empty: bool = False,
) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a missing field or bad line is an error naming file and line."""
    return [row for _, _, row in read_jsonl_lines(path, required, types, allow_empty=allow_empty)]


# ---- Markdown ----------------------------------------------------------------------------------

_MD_SPECIAL = "\\`*_{}[]()<>#+!|~"


def md_escape(x: Any) -> str:
    """Data as inert Markdown text: HTML entities for & < > and a backslash before Markdown syntax."""
    s = str(x).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = "".join("\\" + ch if ch in _MD_SPECIAL and ch not in "<>" else ch for ch in s)
    return " ".join(s.splitlines())


def md_code(x: Any) -> str:
    """Data in monospace that nothing in it can break out of: `<code>` around `md_escape`d text.

    (A Markdown code span would keep HTML inert only in CommonMark renderers; this stays inert in
    any renderer, and a backtick in the data cannot end it.)
    """
    return f"<code>{md_escape(x)}</code>"
