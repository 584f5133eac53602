"""Parse YAML template packs and render them into prompts with verified token positions.

Positions come from the tokenizer's character offsets, then are checked by decoding the token at
each position: a template whose slot does not land on exactly one token is an error, never a
silently shifted index.
"""

from __future__ import annotations

import hashlib
import json
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from advgen.core.files import read_text
from advgen.core.types import AdvgenError, Prompt
from advgen.core.yamlsafe import MAX_YAML_CHARS, StrictLoader, load_yaml

TEMPLATES_DIR = Path(__file__).resolve().parent / "data" / "templates"
"""Built-in packs ship inside the package (an installed wheel has no repository); the repository's
templates/ folder is a byte-identical copy for users to read and edit (tests/test_packaging.py)."""
SLOT_RE = re.compile(r"\{([^{}]*)\}")
NAME_SLOT_RE = re.compile(r"^(IO\d*|S\d+|X\d*)$")
NOUN_SLOTS = ("PLACE", "OBJECT")
ORDERS = ("ABBA", "BABA")


class TemplateError(AdvgenError):
    """A template file or template text that cannot be used; the message names file and line."""


@dataclass(frozen=True)
class Template:
    """A template as written: BABA order means {S1} precedes {IO} in the text."""

    id: str
    text: str
    pack: str = "custom"
    source: str = "<memory>"
    """"file:line" where the template was defined, for error messages."""

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(SLOT_RE.findall(self.text))

    def in_order(self, order: str) -> str:
        """The text for a name order: the written one, or {S1} and {IO} swapped."""
        if order not in ORDERS:
            raise TemplateError(f"unknown order {order!r} (expected one of {ORDERS})")
        if order == self.written_order:
            return self.text
        return self.text.replace("{S1}", "\0").replace("{IO}", "{S1}").replace("\0", "{IO}")

    @property
    def written_order(self) -> str:
        return "ABBA" if self.text.index("{IO}") < self.text.index("{S1}") else "BABA"


@dataclass(frozen=True)
class Fill:
    """Values for a template's slots: names without leading space, nouns, optional extras."""

    io: str
    s: str
    place: str = ""
    object: str = ""
    c: str | None = None
    """Third name that replaces S2 (ABC prompts); None for IOI prompts."""
    x: tuple[str, ...] = ()
    """Values of {X}, {X2}, ...: extra names distinct from IO and S."""

    def value(self, slot: str) -> str:
        if slot == "PLACE":
            return self.place
        if slot == "OBJECT":
            return self.object
        if slot.startswith("IO"):
            return self.io
        if slot == "S2" and self.c is not None:
            return self.c
        if slot.startswith("S"):
            return self.s
        idx = int(slot[1:] or 1) - 1
        if idx >= len(self.x):
            raise TemplateError(f"slot {{{slot}}} needs {idx + 1} extra names, fill has {len(self.x)}")
        return self.x[idx]

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"io": self.io, "s": self.s, "place": self.place, "object": self.object}
        if self.c is not None:
            d["c"] = self.c
        if self.x:
            d["x"] = list(self.x)
        return d


def check_template(t: Template) -> None:
    """Raise a TemplateError naming the template if its slots are unusable."""
    where = f"template {t.id!r} ({t.source})"
    slots = t.slots
    for s in slots:
        if not (NAME_SLOT_RE.match(s) or s in NOUN_SLOTS):
            raise TemplateError(f"{where}: unknown slot {{{s}}}; known: IO, IO<n>, S1, S<n>, X, X<n>, PLACE, OBJECT")
    for need in ("IO", "S1", "S2"):
        if need not in slots:
            raise TemplateError(f"{where}: missing required slot {{{need}}}")
    names = [s for s in slots if NAME_SLOT_RE.match(s)]
    dup = {s for s in names if names.count(s) > 1}
    if dup:
        raise TemplateError(f"{where}: name slot(s) {sorted(dup)} used more than once; number extra mentions ({{IO2}}, {{S3}})")
    if t.text != t.text.rstrip():
        raise TemplateError(f"{where}: text ends with whitespace; it must stop where ' IO' follows")
    if t.text.index("{S2}") < t.text.index("{S1}"):
        raise TemplateError(f"{where}: {{S2}} must come after {{S1}}")
    if "\0" in t.text:
        raise TemplateError(f"{where}: text contains a NUL character")
    for m in SLOT_RE.finditer(t.text):
        if m.start() == 0 or t.text[m.start() - 1] != " ":
            at = "starts the text" if m.start() == 0 else f"follows {t.text[m.start() - 1]!r}"
            raise TemplateError(
                f"{where}: slot {{{m.group(1)}}} {at}; every name and noun must follow a space so it is the "
                f"same token (' Mary') as the answer and as its other mentions (start with a word, e.g. 'Then, {{S1}}')"
            )


class _LineLoader(StrictLoader):
    """Records the line of every mapping so errors can point into the file (no aliases, no duplicate keys)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    d: dict[str, Any] = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    d["__line__"] = node.start_mark.line + 1
    return d


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_templates(path: str | Path) -> tuple[Template, ...]:
    """Load and check a template pack (YAML); errors name the file and line."""
    path = Path(path)
    try:
        text = read_text(path, "template file", limit=4 * MAX_YAML_CHARS)  # UTF-8: at most 4 bytes a character
    except AdvgenError as e:
        raise TemplateError(str(e)) from None
    try:
        doc = load_yaml(text, str(path), _LineLoader)
    except AdvgenError as e:
        raise TemplateError(str(e)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("templates"), list):
        raise TemplateError(f"{path}: expected a mapping with a 'templates' list")
    pack = str(doc.get("pack", path.stem))
    out: list[Template] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc["templates"]):
        line = entry.get("__line__", "?") if isinstance(entry, dict) else "?"
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            raise TemplateError(f"{path}:{line}: template #{i + 1} needs a 'text' string")
        tid = str(entry.get("id", f"t{i + 1:02d}"))
        if tid in seen:
            raise TemplateError(f"{path}:{line}: duplicate template id {tid!r}")
        seen.add(tid)
        t = Template(id=tid, text=entry["text"], pack=pack, source=f"{path}:{line}")
        check_template(t)
        out.append(t)
    if not out:
        raise TemplateError(f"{path}: no templates")
    return tuple(out)


def builtin_pack(name: str = "ioi") -> Path:
    p = TEMPLATES_DIR / f"{name}.yaml"
    if not p.exists():
        have = sorted(q.stem for q in TEMPLATES_DIR.glob("*.yaml"))
        raise TemplateError(f"no built-in template pack {name!r}; available: {have}")
    return p


def resolve_templates(spec: str | Path | None) -> tuple[Template, ...]:
    """A path to a YAML file, or the name of a built-in pack (default: the paper's 'ioi')."""
    if spec is None:
        return load_templates(builtin_pack("ioi"))
    p = Path(spec)
    return load_templates(p if p.suffix in (".yaml", ".yml") or p.exists() else builtin_pack(str(spec)))


_HASHES: dict[int, tuple[weakref.ref[Any], str]] = {}
"""id(tokenizer) -> (weak reference, hash): serialising GPT-2's tokenizer takes 1-2 s, so once per object."""


def tokenizer_hash(tokenizer: Any) -> str:
    """sha256 of the tokenizer's canonical JSON: identifies the vocabulary in manifests (cached per object)."""
    hit = _HASHES.get(id(tokenizer))
    if hit is not None and hit[0]() is tokenizer:
        return hit[1]
    h = _tokenizer_hash(tokenizer)
    try:
        _HASHES[id(tokenizer)] = (weakref.ref(tokenizer), h)
    except TypeError:  # an object that cannot be weakly referenced is hashed every time
        pass
    return h


def tokenizer_sha256(tokenizer: Any) -> str:
    """Full sha256 of the tokenizer's serialised JSON, as training records and checkpoints store it.

    Stricter than `tokenizer_hash` (runtime padding/truncation settings count): a checkpoint resumes
    only under the very tokenizer it was written with.
    """
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


def _tokenizer_hash(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        for runtime in ("padding", "truncation"):  # call-time settings, not the vocabulary
            spec.pop(runtime, None)
        blob = json.dumps(spec, sort_keys=True)
    else:
        blob = repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def single_token_id(tokenizer: Any, word: str, what: str = "answer") -> int:
    ids = tokenizer.encode(" " + word, add_special_tokens=False)
    if len(ids) != 1:
        pieces = [tokenizer.decode([i]) for i in ids]
        raise AdvgenError(f"{what} {word!r} is not a single token with its leading space: {pieces}")
    return ids[0]


def _fill_text(template: Template, order: str, fill: Fill) -> tuple[str, dict[str, tuple[int, int]]]:
    """The prompt text and the character span of each slot's first occurrence."""
    text_t = template.in_order(order)
    pieces: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    pos = 0
    for m in SLOT_RE.finditer(text_t):
        pieces.append(text_t[pos : m.start()])
        start = sum(map(len, pieces))
        value = fill.value(m.group(1))
        if not value:
            raise TemplateError(f"template {template.id!r}: slot {{{m.group(1)}}} has no value")
        pieces.append(value)
        spans.setdefault(m.group(1), (start, start + len(value)))
        pos = m.end()
    pieces.append(text_t[pos:])
    return "".join(pieces), spans


def _slot_positions(
    template: Template, text: str, spans: Mapping[str, tuple[int, int]], tokenizer: Any, prepend_bos: bool
) -> tuple[list[int], dict[str, int]]:
    """Token ids and each slot's token index, verified: one token that decodes to ' ' + the value."""
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    shift = 0
    if prepend_bos:
        if tokenizer.bos_token_id is None:
            raise AdvgenError("prepend_bos requested but the tokenizer has no BOS token")
        ids, shift = [tokenizer.bos_token_id, *ids], 1
    positions: dict[str, int] = {}
    for slot, (a, b) in spans.items():
        hits = [i for i, (s, e) in enumerate(offsets) if s < b and e > a]
        word = text[a:b]
        glued = (a > 0 and text[a - 1].isalnum()) or (b < len(text) and text[b].isalnum())
        if glued or len(hits) != 1 or tokenizer.decode([ids[hits[0] + shift]]) != " " + word:
            got = [tokenizer.decode([ids[i + shift]]) for i in hits]
            raise TemplateError(
                f"template {template.id!r} ({template.source}), slot {{{slot}}}: {word!r} is not one "
                f"token with its leading space in context (tokens {got})"
            )
        positions[slot] = hits[0] + shift
    return ids, positions


def render(
    template: Template,
    order: str,
    fill: Fill,
    tokenizer: Any,
    *,
    prepend_bos: bool = True,
    family: str = "clean",
    pair_id: str = "",
    extra: Mapping[str, Any] | None = None,
) -> Prompt:
    """Render one prompt; every name/noun slot must be exactly one token, checked by decoding."""
    text, spans = _fill_text(template, order, fill)
    ids, positions = _slot_positions(template, text, spans, tokenizer, prepend_bos)
    positions["S1+1"] = positions["S1"] + 1
    positions["END"] = len(ids) - 1
    io_tok = single_token_id(tokenizer, fill.io, "IO name")
    s_tok = single_token_id(tokenizer, fill.s, "S name")
    info = {"fill": fill.as_dict(), "text_order": order, **(extra or {})}
    return Prompt(
        text=text,
        io=fill.io,
        s=fill.s,
        token_ids=tuple(ids),
        positions=positions,
        io_token=io_tok,
        s_token=s_tok,
        template_id=template.id,
        order="ABC" if fill.c is not None else order,
        family=family,
        pair_id=pair_id,
        extra=info,
    )
