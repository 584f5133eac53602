"""The paper's 15 templates as held-out skeletons: the corpus must never contain their prompt part.

Read from the built-in pack 'ioi' (advgen/prompts/data/templates/ioi.yaml); names, places, objects and articles are wildcarded,
so no variant of a held-out prompt can leak into training.
"""

from __future__ import annotations

import re


# Held-out paper templates ([A] = IO, [B] = S), read from the built-in pack 'ioi' (advgen/prompts/data/templates/ioi.yaml).
# The prompt part (everything before the final [A]) must never occur in the corpus, with any
# names, places, objects or articles.
def _paper_templates() -> tuple[str, ...]:
    from advgen.prompts.templates import resolve_templates

    conv = {"{S1}": "[B]", "{S2}": "[B]", "{IO}": "[A]", "{PLACE}": "[PLACE]", "{OBJECT}": "[OBJECT]"}
    out = []
    for tpl in resolve_templates("ioi"):
        text = tpl.text
        for k, v in conv.items():
            text = text.replace(k, v)
        out.append(text + " [A]")
    return tuple(out)


PAPER_TEMPLATES: tuple[str, ...] = _paper_templates()


def template_regex(template: str) -> re.Pattern[str]:
    """Regex for a template's prompt part: any name/place/object/article, flexible spacing."""
    body = template.rsplit(" [A]", 1)[0]
    out = []
    for tok in re.split(r"(\[[A-Z]+\]|\s+|,)", body):
        if not tok:
            continue
        if tok in ("[A]", "[B]"):
            out.append(r"[A-Z][\w'-]*")
        elif tok in ("[PLACE]", "[OBJECT]"):
            out.append(r"[\w'-]+")
        elif tok.isspace():
            out.append(r"\s+")
        elif tok == ",":
            out.append(r",?")
        elif tok.lower() in ("a", "an", "the"):
            out.append(r"(?:a|an|the)")
        else:
            out.append(re.escape(tok))
    pat = "".join(out).replace(r",?\s+", r",?\s*")
    return re.compile(pat, re.IGNORECASE)


HELD_OUT_REGEXES: tuple[re.Pattern[str], ...] = tuple(template_regex(t) for t in PAPER_TEMPLATES)


def contains_paper_template(text: str) -> bool:
    return any(r.search(text) for r in HELD_OUT_REGEXES)
