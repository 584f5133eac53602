"""`advgen scan`: run the model over the prompt space (exhaustive, a prefix or a seeded sample).

Memory stays flat in the size of the scan: the space is enumerated lazily (prompts/space.py),
units of `unit` prompts run on a backend (this process or Ray actors) and come back in unit
order, and the driver streams each unit's rows to OUT/parts/part-NNNNN.jsonl, its journal entry
to OUT/journal/, its failing prompts (LD < 0: S beats IO) to OUT/adversarial/results.jsonl, and
folds its rows into running counts. Nothing else is kept. Every file is written by the driver in
unit order, so the local and Ray backends write the same bytes, and `resume=True` reuses every
unit already in the journal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from tqdm.auto import tqdm

from advgen.core import files, options, records, rundir
from advgen.core.journal import Interrupted as Interrupted  # re-exported: tests stop a scan with it
from advgen.core.journal import Journal, key_of, module_digest
from advgen.core.types import AdvgenError, Interval, Prompt, PromptSet
from advgen.model.backends import Backend
from advgen.model.loading import LoadedModel
from advgen.model.validate import validate
from advgen.outputs.scan_summary import Z95, FailureGroup, ScanSelection, ScanSource, ScanSummary, SlotValues, WorstPair, wilson
from advgen.prompts.lexicon import build_lexicon
from advgen.prompts.lexicon import report as lexicon_report
from advgen.prompts.sentences import load_bank
from advgen.prompts.space import PromptSpace, Selection, chunks, paper_space
from advgen.prompts.templates import resolve_templates, tokenizer_hash
from advgen.tasks.lexicons import resolve_lexicons
from advgen.tasks.registry import resolve_task
from advgen.tasks.space import TaskSpace
from advgen.tasks.spec import TaskError

N_WORST_PAIRS = 20
MAX_SLOT_VALUES = 100
"""A task slot with at most this many values gets every value's failure rate (100 two-digit years); else the 20 worst
by the Wilson lower bound (a value failing once in one prompt is not the worst)."""


@dataclass(frozen=True)
class ScanConfig:
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    templates: str | None = None
    distractors: bool = False
    """Add the paper's five distractor sentences, naming IO or S, as a dimension of the space."""
    full_lexicon: bool = False
    """Every single-token name/place/object of the lexicon, not only the paper's lists."""
    unit: int = 512
    batch_size: int = 32
    task: str | None = None
    """A built-in task name or YAML task file; None is IOI (its space: templates x names x places x objects)."""

    def settings(self) -> dict[str, Any]:
        if self.task is not None and resolve_task(self.task).engine != "ioi":
            if self.templates or self.distractors or self.full_lexicon:
                raise AdvgenError(
                    "--templates, --distractors and --full-lexicon shape IOI's space; a task's space is its own templates x "
                    "lexicons"
                )
            t = resolve_task(self.task)
            return {
                "limit": self.limit,
                "sample": self.sample,
                "task": t.name,
                "task_source": t.source,
                "unit": self.unit,
                "batch_size": self.batch_size,
            }
        return {
            "limit": self.limit,
            "sample": self.sample,
            "templates": str(self.templates or "ioi"),
            "distractors": self.distractors,
            "lexicon": "full" if self.full_lexicon else "paper",
            "unit": self.unit,
            "batch_size": self.batch_size,
        }


@dataclass(frozen=True)
class ModelInfo:
    """What the manifest says about the model, read on a worker (the driver may hold no model)."""

    name: str
    source: str
    tokenizer_hash: str
    lexicon: Mapping[str, Any]
    weights_hash: str = ""
    """sha256 of the weights (`advgen.core.journal.module_digest`): journal units are keyed by it."""
    runtime: Mapping[str, str] = field(default_factory=dict)
    """Device, dtype and loading options of the model that measured (the manifest records them)."""


@dataclass(frozen=True)
class ScanUnit:
    space: PromptSpace | TaskSpace
    selection: Selection
    start: int
    stop: int
    batch_size: int


@dataclass(frozen=True)
class ScanResult:
    out: Path
    summary: dict[str, Any]
    manifest: dict[str, Any]
    computed_units: int
    reused_units: int

    @property
    def record(self) -> ScanSummary:
        """`summary` (summary.json as written) typed."""
        return ScanSummary.from_dict(self.summary, self.out / "summary.json")


def prepare(model: LoadedModel, cfg: ScanConfig) -> tuple[ModelInfo, PromptSpace | TaskSpace]:
    """Unit 0 of every scan: the space as this model's tokenizer admits it (runs on a worker)."""
    task = resolve_task(cfg.task)
    if task.engine != "ioi":
        words = resolve_lexicons(task, model.tokenizer)
        return (
            ModelInfo(
                model.name,
                model.source,
                tokenizer_hash(model.tokenizer),
                words.report(),
                module_digest(model.hf_model),
                model.runtime,
            ),
            TaskSpace(task, words.words),
        )
    lex = build_lexicon(model.tokenizer)
    sentences = load_bank(lex).paper if cfg.distractors else ()
    space = paper_space(resolve_templates(cfg.templates), lex, sentences, cfg.full_lexicon)
    info = ModelInfo(
        model.name,
        model.source,
        tokenizer_hash(model.tokenizer),
        lexicon_report(lex),
        module_digest(model.hf_model),
        model.runtime,
    )
    return info, space


def _render(space: PromptSpace | TaskSpace, i: int, tokenizer: Any) -> Prompt | None:
    """Prompt i; for a task's space None where a slot is not one token in context (GPT-2's " 1302" = " 130" + "2"):
    such prompts are outside the task, counted in the summary as `excluded_unrenderable`, never silently shifted."""
    if isinstance(space, PromptSpace):
        return space.render(i, tokenizer)
    try:
        return space.render(i, tokenizer)
    except TaskError:
        return None


def scan_unit(model: LoadedModel, unit: ScanUnit) -> str:
    """Render and measure one unit's prompts; the unit's rows as JSONL text (what the driver writes)."""
    prompts = tuple(p for i in unit.selection.indices(unit.start, unit.stop) if (p := _render(unit.space, i, model.tokenizer)))
    ev = validate(model, PromptSet(prompts, tokenizer_hash(model.tokenizer)), unit.batch_size)
    return files.jsonl_text(records.result_rows(ev))


# ---- running counts ------------------------------------------------------------------------------


class Tally:
    """Counts and sums folded row by row in unit order, so equal rows give equal floats."""

    def __init__(self) -> None:
        self.n = self.fail = self.pos = 0
        self.sum_ld = self.sum_ld2 = self.sum_io_p = 0.0
        self.groups: dict[str, dict[str, list[float]]] = {"template": {}, "order": {}, "family": {}, "pair": {}}

    def add(self, row: Mapping[str, Any]) -> None:
        ld = float(row["logit_diff"])
        self.n += 1
        self.fail += ld < 0
        self.pos += ld > 0
        self.sum_ld += ld
        self.sum_ld2 += ld * ld
        self.sum_io_p += float(row["io_prob"])
        keys = {"template": row["template_id"], "order": row["order"], "family": row["family"], "pair": f"{row['io']}|{row['s']}"}
        if "task" in row:  # a task's rows: failure rate by each slot's value (e.g. per year, per century)
            keys.update({f"slot:{s}={v}": "" for s, v in row["extra"].get("values", {}).items()})
        for g, k in keys.items():
            c = self.groups.setdefault(g, {}).setdefault(k, [0, 0, 0.0])
            c[0] += 1
            c[1] += ld < 0
            c[2] += ld

    def summary(self) -> dict[str, Any]:
        return self.record().to_dict()

    def record(self) -> ScanSummary:
        """The counts as a summary (the driver adds the selection, or the source of a failing set)."""
        n = self.n
        mean = self.sum_ld / n if n else float("nan")
        sd = math.sqrt(max(0.0, self.sum_ld2 / n - mean * mean) * n / (n - 1)) if n > 1 else float("nan")
        half = Z95 * sd / math.sqrt(n) if n > 1 else float("nan")
        by = {g: {k: _group(c) for k, c in sorted(self.groups[g].items())} for g in ("template", "order", "family")}
        pairs = sorted(self.groups["pair"].items(), key=lambda kv: (-kv[1][1], kv[0]))[:N_WORST_PAIRS]
        return ScanSummary(
            n,
            self.fail,
            self.fail / n if n else float("nan"),
            wilson(self.fail, n),
            mean,
            Interval(mean, mean - half, mean + half),
            self.pos / n if n else float("nan"),
            self.fail / n if n else float("nan"),
            self.sum_io_p / n if n else float("nan"),
            by["template"],
            by["order"],
            by["family"],
            self._by_slot() or None,
            tuple(WorstPair(k.split("|")[0], k.split("|")[1], _group(c)) for k, c in pairs if c[1] > 0),
        )

    def _by_slot(self) -> dict[str, SlotValues]:
        """Per slot: every value's failure rate when it has at most MAX_SLOT_VALUES values, else the worst ones."""
        per: dict[str, dict[str, list[float]]] = {}
        for g, d in self.groups.items():
            if g.startswith("slot:"):
                slot, value = g[5:].split("=", 1)
                per.setdefault(slot, {})[value] = d[""]
        out: dict[str, SlotValues] = {}
        for slot, vals in sorted(per.items()):
            items = sorted(vals.items())
            if len(items) > MAX_SLOT_VALUES:
                items = sorted(items, key=lambda kv: (-wilson(int(kv[1][1]), int(kv[1][0])).low, kv[0]))[:N_WORST_PAIRS]
            out[slot] = SlotValues(len(vals), {k: _group(c) for k, c in items})
        return out


def _group(c: list[float]) -> FailureGroup:
    return FailureGroup.of_counts(int(c[0]), int(c[1]), c[2])


# ---- the driver ----------------------------------------------------------------------------------


def scan_identity(model_spec: str, cfg: ScanConfig) -> str:
    """What makes two scan directories the same scan (for the --out rules of `advgen.core.rundir`)."""
    return rundir.identity_of("scan", {"model": model_spec, "seed": cfg.seed, **cfg.settings()})


def check_scan(model_spec: str, cfg: ScanConfig, out: Path, overwrite: bool = False) -> None:
    """Argument and --out checks, before any model loads."""
    for name in ("seed", "unit", "batch_size", "limit", "sample"):  # the CLI's shared checks, for Python callers too
        options.check(name, getattr(cfg, name))
    Selection.of(1, cfg.limit, cfg.sample, cfg.seed)
    rundir.check_out(out, "scan", scan_identity(model_spec, cfg), overwrite)


def run_scan(
    backend: Backend,
    cfg: ScanConfig,
    out: Path,
    resume: bool = False,
    progress: bool = False,
    stop_after_units: int | None = None,
    overwrite: bool = False,
    command: str = "",
) -> ScanResult:
    """Scan the selected prompts on `backend`; write parts, journal, summary, manifest, adversarial set.

    OUT is written through `rundir.writing` (lock, completion marker); parts/ and journal/ are kept
    across a resume and left out of the marker's hashes (they can be large).
    """
    [(info, space)] = list(backend.map(prepare, [cfg]))
    check_scan(info.name, cfg, out, overwrite)
    with rundir.writing(out, "scan", scan_identity(info.name, cfg), overwrite, keep=("journal", "parts")):
        return _scan(backend, cfg, out, info, space, resume, progress, stop_after_units, command)


def _scan(
    backend: Backend,
    cfg: ScanConfig,
    out: Path,
    info: ModelInfo,
    space: PromptSpace | TaskSpace,
    resume: bool,
    progress: bool,
    stop_after_units: int | None,
    command: str = "",
) -> ScanResult:
    sel = Selection.of(space.size, cfg.limit, cfg.sample, cfg.seed)
    # units are keyed by content: the weights, the tokenizer, the template text, the space, the selection, the batching
    salt = key_of(
        "scan",
        info.weights_hash,
        info.tokenizer_hash,
        [(t.id, t.text) for t in space.templates],
        space.describe(),
        sel.describe(),
        cfg.batch_size,
    )
    ranges = list(chunks(sel.n, cfg.unit))
    keys = [f"{a}:{b}" for a, b in ranges]
    journal = Journal(out, resume, stop_after_units, salt=salt, parts=True)
    reuse = {u for u in range(len(ranges)) if resume and journal.load_part(u, keys[u]) is not None}
    todo = (ScanUnit(space, sel, a, b, cfg.batch_size) for u, (a, b) in enumerate(ranges) if u not in reuse)
    computed = backend.map(scan_unit, todo)
    tally, bad = Tally(), Tally()
    bar = tqdm(total=sel.n, desc="scan", unit="prompt", disable=not progress)
    with files.atomic_open(out / "adversarial" / "results.jsonl") as adv:
        for u in range(len(ranges)):
            if u in reuse:
                text = journal.load_part(u, keys[u])  # verified again: never a part changed since the check
                if text is None:
                    raise AdvgenError(f"{journal.part(u)} changed while the scan ran; rerun with --resume")
            else:
                journal.check_stop()
                text = next(computed)
                journal.save_part(u, keys[u], text)
            fold_unit(text, tally, bad, adv)
            bar.update(ranges[u][1] - ranges[u][0])
    bar.close()
    return _finish(out, cfg, info, space, sel, tally, bad, journal.computed, len(reuse), command)


def fold_unit(text: str, tally: Tally, bad: Tally, adv: IO[str]) -> None:
    """Fold one unit's rows into the counts; copy its failing lines (LD < 0) byte for byte to `adv`."""
    for line in text.splitlines(keepends=True):
        row = json.loads(line)
        tally.add(row)
        if row["logit_diff"] < 0:
            bad.add(row)
            adv.write(line)


def _finish(
    out: Path,
    cfg: ScanConfig,
    info: ModelInfo,
    space: PromptSpace | TaskSpace,
    sel: Selection,
    tally: Tally,
    bad: Tally,
    n_new: int,
    n_reused: int,
    command: str = "",
) -> ScanResult:
    settings = {**cfg.settings(), "selection": sel.describe(), "space": space.describe(), "lexicon_report": dict(info.lexicon)}
    man = records.manifest(info, info.tokenizer_hash, cfg.seed, settings, command)
    excluded = sel.n - tally.n if isinstance(space, TaskSpace) else None
    record = replace(
        tally.record(), selection=ScanSelection.from_dict(sel.describe(), "Selection.describe"), excluded_unrenderable=excluded
    )
    summary = record.to_dict()  # its shape is stated once, in advgen.outputs.scan_summary
    files.atomic_write_text(out / "summary.json", files.dumps(summary) + "\n")
    files.atomic_write_text(out / "manifest.json", files.dumps(man) + "\n")
    bad_summary = replace(bad.record(), worst_pairs=None, source=ScanSource("..", tally.n, record.failure_rate)).to_dict()
    files.atomic_write_text(out / "adversarial" / "summary.json", files.dumps(bad_summary) + "\n")
    adv_man = {**man, "settings": {**man["settings"], "subset": "failing prompts (logit_diff < 0)"}}
    files.atomic_write_text(out / "adversarial" / "manifest.json", files.dumps(adv_man) + "\n")
    rundir.write_marker(out / "adversarial", "scan-adversarial", scan_identity(info.name, cfg))
    return ScanResult(out, summary, man, n_new, n_reused)
