"""HTML building blocks of the report: escaping, number formatting, tables, figures, a Markdown subset.

Kept apart from report.py so every section module (verdict panel, claims view, attention view)
builds its HTML the same way without importing the report itself.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any


class Raw(str):
    """A table cell that is already HTML (a coloured verdict, a link); `table` does not escape it."""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, float):
        return "nan" if x != x else f"{x:.3f}"
    return str(x)


def _cell(v: Any) -> str:
    if isinstance(v, Raw):
        return f"<td>{v}</td>"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f'<td class="num">{esc(fmt(v))}</td>'
    return f"<td>{esc(fmt(v))}</td>"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in rows)
    head = f"<thead><tr>{th}</tr></thead>" if any(header) else ""  # key/value tables need no header row
    attr = f' class="{esc(cls)}"' if cls else ""
    return f"<table{attr}>{head}<tbody>{body}</tbody></table>"


def img(b64: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{b64}">{cap}</figure>'


def split_row(line: str) -> list[str]:
    """Cells of one Markdown table row; `\\|` is a literal pipe inside a cell, not a separator."""
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def _inline(s: str) -> str:
    s = esc(s)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)


def markdown_html(md: str) -> str:
    """The small Markdown subset claims.md and table.md use: headings, pipe tables, lists, paragraphs, `code`."""
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        line = lines[i].rstrip()
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(split_row(lines[i]))
                i += 1
            body = [r for r in block[1:] if not all(re.fullmatch(r":?-{2,}:?", c) for c in r)]
            out.append(
                "<table><thead><tr>"
                + "".join(f"<th>{_inline(c)}</th>" for c in block[0])
                + "</tr></thead><tbody>"
                + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                + "</tbody></table>"
            )
            continue
        m = re.match(r"(#{1,6})\s+(.*)", line)
        if m:
            level = min(len(m.group(1)) + 2, 6)
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif re.match(r"\s*[-*]\s+", line):
            item = _inline(re.sub(r"^\s*[-*]\s+", "", line))
            out.append(f"<ul><li>{item}</li></ul>")
        elif line:
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)
