"""Head behaviour records: what each circuit head does, measured on the model in model-agnostic terms.

A role label ("name mover") is a summary; the failure-mode compiler needs the facts behind it:
where the head reads from (attention mass per slot at its query position), how that mass moves
when a name is mentioned once more (a probe sentence naming IO or S against the same sentence
about "someone", so length and words match), what it writes (the slope of its direct logit
attribution to IO - S against its IO-minus-S attention: positive = copies what it attends to,
negative = suppresses it) and which upstream heads feed its query (from path patching, when
discovery ran it). Records go into the circuit JSON beside the role scores; their types are
`advgen.circuits.behaviour_records`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from advgen.circuits.behaviour_records import MENTIONED, SITES, SLOTS, HeadBehaviour, Mention, MLPBehaviour, WriteChange
from advgen.circuits.format import Circuit, CircuitHead, CircuitMLP
from advgen.circuits.identity import model_identity, stale_records
from advgen.circuits.reads import Reads, read_heads
from advgen.core.types import AdvgenError, Head, Prompt, PromptSet, Role
from advgen.model.loading import LoadedModel
from advgen.model.validate import DEFAULT_BATCH
from advgen.prompts import datasets
from advgen.prompts.lexicon import build_lexicon
from advgen.prompts.sentences import load_bank, name_slot
from advgen.prompts.templates import Template, render, resolve_templates, tokenizer_hash


@dataclass(frozen=True)
class _Probe:
    """One pair of probe prompts for a clean prompt: the name mentioned once more vs 'someone'."""

    clean: int
    mentioned: str
    site: str
    attack: Prompt
    control: Prompt


def _insert(text: str, sentence: str, site: str) -> str | None:
    """The template text with one sentence before it, or after the first clause's sentence (None if none)."""
    if site == "before":  # a text-initial name would lack its leading space, so every probe gets a lead-in
        return "Earlier, " + sentence + " " + text
    s2 = text.index("{S2}")
    cut = text.rfind(". ", 0, s2)
    if cut < text.index("{IO}"):
        return None
    return text[: cut + 2] + sentence + " " + text[cut + 2 :]


def probes(specs: Sequence[datasets.Spec], sentences: Sequence[str], tokenizer: Any, seed: int, block: int = 1) -> list[_Probe]:
    """Per clean spec, mentioned name and site: the probe pair (slot {IO2}/{S3} vs 'someone').

    `block` > 1: that many distinct sentences, the first naming the person and the rest about "Someone" (the attack's edit)."""
    out = []
    for i, sp in enumerate(specs):
        rng = random.Random(f"{seed}:behaviour:{sp.pair_id}")
        text = sp.template.in_order(sp.order)
        for y in MENTIONED:
            for site in SITES:
                if block == 1:
                    sent = rng.choice(list(sentences))
                else:
                    first, *rest = rng.sample(list(sentences), block)
                    sent = " ".join([first, *(r.replace("{N}", "Someone") for r in rest)])
                a_text = _insert(text, name_slot(sent, "IO2" if y == "IO" else "S3"), site)
                c_text = _insert(text, sent.replace("{N}", "someone" if site == "before" else "Someone"), site)
                if a_text is None or c_text is None or any(x.startswith("X") for x in sp.template.slots):
                    continue
                pair = []
                for fam, t in (("attack", a_text), ("control", c_text)):
                    tpl = Template(id=f"{sp.template.id}+probe", text=t, pack="probe", source="behaviour probe")
                    pair.append(render(tpl, tpl.written_order, sp.fill, tokenizer, family=fam, pair_id=sp.pair_id))
                out.append(_Probe(i, y, site, pair[0], pair[1]))
    return out


def slot_mass(p: Prompt, row: np.ndarray) -> dict[str, float]:
    """Attention mass per slot of one END row; every extra mention of IO/S or other name is 'other_names'."""
    pos = p.positions
    named = {"IO": pos["IO"], "S1": pos["S1"], "S1+1": pos["S1+1"], "S2": pos["S2"]}
    if p.end - 1 not in named.values():
        named["END-1"] = p.end - 1
    out = {k: float(row[v]) for k, v in named.items()}
    out.setdefault("END-1", 0.0)
    others = [i for i, t in enumerate(p.token_ids) if t in (p.io_token, p.s_token) and i not in named.values()]
    others += [v for k, v in pos.items() if k.startswith("X")]
    out["other_names"] = float(sum(row[i] for i in set(others)))
    out["filler"] = float(1.0 - sum(out.values()))
    return {k: out[k] for k in SLOTS}


def name_mass(p: Prompt, row: np.ndarray) -> tuple[float, float]:
    """Attention mass on every token of the IO name and on every token of the S name."""
    ids = np.array(p.token_ids)
    return float(row[ids == p.io_token].sum()), float(row[ids == p.s_token].sum())


PROBES = ("paper", "attack")
"""How a mention probe is written. "paper": one of the IOI paper's five sentences naming the person (the records'
default). "attack": the compiled attack's own edit at dose 1, EDIT_SENTENCES sentences of the neutral bank, the first
naming the person and the rest "Someone" (its control: all "Someone"), so the records are measured on what the attack adds."""
EDIT_SENTENCES = 3
"""The compiled attack's sentence block (`advgen.attacks.compiler.DOSES`' largest; a test keeps them equal)."""


@dataclass(frozen=True)
class BehaviourSettings:
    n: int = 100
    seed: int = 0
    batch_size: int = DEFAULT_BATCH
    templates: str | None = None
    probe: str = "paper"
    """One of PROBES."""

    def __post_init__(self) -> None:
        if self.probe not in PROBES:
            raise AdvgenError(f"behaviour probe {self.probe!r} is not one of {list(PROBES)}")


def probe_set(tokenizer: Any, s: BehaviourSettings) -> tuple[list[Prompt], list[_Probe]]:
    """The records' clean prompts and their mention probes, written as `s.probe` says."""
    lex = build_lexicon(tokenizer)
    specs = datasets.sample_specs(resolve_templates(s.templates), lex, s.n, s.seed)
    bank = load_bank(lex)
    pr = (
        probes(specs, bank.paper, tokenizer, s.seed)
        if s.probe == "paper"
        else probes(specs, bank.neutral, tokenizer, s.seed, EDIT_SENTENCES)
    )
    return list(datasets.build(specs, tokenizer)), pr


def measure_behaviour(
    model: LoadedModel,
    heads: Sequence[Head],
    s: BehaviourSettings = BehaviourSettings(),
    feeds: Mapping[Head, tuple[tuple[str, ...], float]] | None = None,
) -> dict[Head, HeadBehaviour]:
    """Behaviour records for `heads` (query END) from n clean prompts and their mention probes."""
    return measure_records(model, heads, (), s, feeds)[0]


def measure_records(
    model: LoadedModel,
    heads: Sequence[Head],
    mlps: Sequence[int],
    s: BehaviourSettings = BehaviourSettings(),
    feeds: Mapping[Head, tuple[tuple[str, ...], float]] | None = None,
) -> tuple[dict[Head, HeadBehaviour], dict[int, MLPBehaviour]]:
    """Records for `heads` and the MLP nodes in layers `mlps`, from one read of n clean prompts and their mention probes.

    A head's path runs through the later MLPs that are not nodes; a node's own record counts what passes through it.
    """
    tok = model.tokenizer
    clean, pr = probe_set(tok, s)
    allp = clean + [p for q in pr for p in (q.attack, q.control)]
    reads = read_heads(model, PromptSet(tuple(allp), tokenizer_hash(tok)), list(heads), s.batch_size, list(mlps))
    ident = model_identity(model)
    out = {}
    for j, h in enumerate(heads):
        masses = [slot_mass(p, reads.rows[i][h]) for i, p in enumerate(clean)]
        diff = np.array([np.subtract(*name_mass(p, reads.rows[i][h])) for i, p in enumerate(allp)])
        gain, direct = (float(np.polyfit(diff, y[:, j], 1)[0]) if np.ptp(diff) > 0 else 0.0 for y in (reads.path, reads.dla))
        mention = _mentions(h, j, len(clean), pr, allp, reads)
        fq, fe = (feeds or {}).get(h, ((), None))
        out[h] = HeadBehaviour(
            str(h),
            "END",
            {k: float(np.mean([m[k] for m in masses])) for k in SLOTS},
            mention,
            gain,
            "copies" if gain > 0 else "suppresses",
            float(reads.dla[: len(clean), j].mean()),
            tuple(fq),
            None if fe is None else float(fe),
            len(clean),
            direct,
            "direct+mlps",
            ident,
        )
    nodes = {}
    for k, layer in enumerate(mlps):
        j = len(heads) + k
        nodes[layer] = MLPBehaviour(
            f"m{layer}",
            "END",
            float(reads.dla[: len(clean), j].mean()),
            float(reads.path[: len(clean), j].mean()),
            _write_changes(j, len(clean), pr, reads),
            len(clean),
            ident,
        )
    return out, nodes


def _write_changes(j: int, n_clean: int, pr: Sequence[_Probe], reads: Reads) -> dict[str, dict[str, WriteChange]]:
    """Per mentioned name and site: mean change of write j's real-path and direct LD figures, probe minus its control."""
    out: dict[str, dict[str, WriteChange]] = {}
    for y, site, a, c in _probe_pairs(pr, n_clean):
        d, dd = reads.path[a, j] - reads.path[c, j], reads.dla[a, j] - reads.dla[c, j]
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
        out.setdefault(y, {})[site] = WriteChange(float(d.mean()), float(dd.mean()), se, len(d))
    return out


def _probe_pairs(pr: Sequence[_Probe], n_clean: int) -> Iterator[tuple[str, str, list[int], list[int]]]:
    """(mentioned name, site, probe rows, their control rows) for every probe kind present; rows follow the clean prompts."""
    for y in MENTIONED:
        for site in SITES:
            ks = [k for k, q in enumerate(pr) if q.mentioned == y and q.site == site]
            if ks:
                yield y, site, [n_clean + 2 * k for k in ks], [n_clean + 2 * k + 1 for k in ks]


def _mentions(
    h: Head, j: int, n_clean: int, pr: Sequence[_Probe], allp: Sequence[Prompt], reads: Reads
) -> dict[str, dict[str, Mention]]:
    """Per mentioned name and site: mean change of the head's mass on IO and on S, probe minus its control."""
    out: dict[str, dict[str, Mention]] = {}
    for y, site, a, c in _probe_pairs(pr, n_clean):
        d = np.array([name_mass(allp[i], reads.rows[i][h]) for i in a]) - np.array(
            [name_mass(allp[i], reads.rows[i][h]) for i in c]
        )
        dd = d[:, 0] - d[:, 1]
        se = float(dd.std(ddof=1) / np.sqrt(len(dd))) if len(dd) > 1 else 0.0
        out.setdefault(y, {})[site] = Mention(
            float(d[:, 0].mean()), float(d[:, 1].mean()), float((reads.dla[a, j] - reads.dla[c, j]).mean()), se, len(dd)
        )
    return out


def query_feeds(
    pp_queries: np.ndarray | None, name_movers: Sequence[Head], threshold: float
) -> dict[Head, tuple[tuple[str, ...], float]]:
    """Heads whose path-patching effect on the name movers' queries is at most -threshold."""
    if pp_queries is None or not name_movers:
        return {}
    q = np.nan_to_num(pp_queries, nan=0.0)
    return {
        Head(int(a), int(b)): (tuple(str(h) for h in name_movers), float(q[a, b]))
        for a, b in zip(*np.nonzero(q <= -threshold), strict=True)
    }


def with_records(
    model: LoadedModel,
    heads: Sequence[CircuitHead],
    matrices: Mapping[str, np.ndarray],
    s: BehaviourSettings,
    feed_threshold: float,
    mlps: Sequence[CircuitMLP] = (),
) -> tuple[tuple[CircuitHead, ...], tuple[CircuitMLP, ...]]:
    """The circuit's heads and MLP nodes with their behaviour records filled in (discovery's last step)."""
    if not heads and not mlps:
        return tuple(heads), tuple(mlps)
    nms = [h.head for h in heads if h.role == Role.NAME_MOVER]
    feeds = query_feeds(matrices.get("pp_queries"), nms, feed_threshold)
    recs, nodes = measure_records(model, [h.head for h in heads], [m.layer for m in mlps], s, feeds)
    return (
        tuple(replace(h, behaviour=recs[h.head].to_dict()) for h in heads),
        tuple(replace(m, behaviour=nodes[m.layer].to_dict()) for m in mlps),
    )


def attach_records(model: LoadedModel, circuit: Circuit, s: BehaviourSettings = BehaviourSettings(), why: str = "") -> Circuit:
    """`circuit` with behaviour records measured on `model` for every head and MLP node (e.g. a hand-written or planted
    circuit)."""
    heads, mlps = with_records(model, circuit.heads, {}, s, 0.0, circuit.mlps)
    prov = {
        **circuit.provenance,
        "behaviour_records": f"measured on {model.name} by advgen.circuits.behaviour "
        f"(n={s.n} clean prompts and their mention probes, seed={s.seed}"
        + ("" if s.probe == "paper" else f", probes written as {s.probe!r}")
        + ")"
        + (f": {why}" if why else ""),
    }
    return replace(circuit, heads=heads, mlps=mlps, provenance=prov)


def ensure_records(
    model: LoadedModel, circuit: Circuit, s: BehaviourSettings = BehaviourSettings(), force: bool = False
) -> tuple[Circuit, str | None]:
    """The circuit with records measured on `model` wherever they are missing or from another model, and why they were measured.

    Records are never reused across models: one measured on other weights or another tokenizer
    (or whose model is unknown) is measured again on this one, the reason kept in the provenance.
    """
    why = "asked for (--measure-behaviour)" if force else stale_records(circuit, model_identity(model))
    if why is None:
        return circuit, None
    return attach_records(model, circuit, s, why), why
