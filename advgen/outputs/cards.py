"""Dataset cards: an HF-style README.md (YAML front matter + prose) for every export.

Everything in a card comes from the run directory (manifest.json, summary.json, circuit, rows), so
a card never states a figure that the run did not produce; no timestamps, so equal runs give
equal cards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from advgen.circuits.format import Circuit
from advgen.core.files import md_code, md_escape
from advgen.outputs.run_summary import headlines
from advgen.outputs.rundata import MARKER_KEY, RunData, arrow_table, columns, splits

FIELDS: dict[str, str] = {
    "text": "the prompt, ending right before the answer (no BOS; advgen prepends BOS when it runs a model)",
    "io": "indirect object: the correct answer name (scored as ' ' + io)",
    "s": "subject: the distractor name, mentioned twice (S1, S2)",
    "family": "clean, control, attack or baseline (attack runs); clean or abc (plain runs)",
    "mode": "attack/control failure-mode name (null for clean rows)",
    "template_id": "id of the template the prompt was rendered from",
    "order": "name order: ABBA, BABA (IOI) or ABC",
    "pair_id": "links an attack/control row to the clean prompt it came from",
    "n_tokens": "token count of the prompt including BOS",
    "positions": "token index (BOS = 0) of each slot: IO, S1, S1+1, S2, END, PLACE, OBJECT, ...",
    "extra": "provenance: filled slot values, name order as written, ...",
    "task": "the task (rows of tasks other than IOI); io and s then hold its answer and foil",
    "answer": "the word the task's answer rule gives (= io)",
    "foil": "the word the task's metric compares against (= s)",
    "logit_diff": "logit(' ' + io) - logit(' ' + s) at END, measured on the model named below",
    "io_logit": "logit of the IO token at END",
    "s_logit": "logit of the S token at END",
    "io_prob": "softmax probability of the IO token at END",
    "s_prob": "softmax probability of the S token at END",
    "io_rank": "rank of the IO token among all tokens at END (0 = top prediction)",
    "s_beats_io": "logit_diff < 0",
    "params": "attack parameters (dose, insertion point, inserted sentence, ...)",
    "is_break": "attack LD < 0 while its clean pair had LD > 0",
    "explained": "whether the internal signal the failure mode predicts moved (null if not measured)",
    "control_breaks": (
        "for a break: whether its matched control (the same edit without the mechanism) also has LD < 0, "
        "so the edit, not the circuit, may explain it (null for other rows)"
    ),
    "head_signals": "attention readouts, keyed 'a9.h9:END->IO'",
}

FORMAT_NOTES: dict[str, str] = {
    "jsonl": (
        "One JSON object per line per split in `data/<split>.jsonl`, fields exactly as in the run's results.jsonl; "
        "nested fields stay objects (`datasets.load_dataset` reads them as its `json` type, one schema for every split)."
    ),
    "csv": "`data/<split>.csv`; `positions` is spread over `pos_<slot>` columns, other nested fields are JSON strings.",
    "parquet": (
        "`data/<split>.parquet` (zstd); `positions` is spread over `pos_<slot>` integer columns, "
        "other nested fields (extra, params, head_signals) are JSON strings."
    ),
    "hf": "A `datasets.DatasetDict` saved with `save_to_disk` in `hf/`; columns as in the Parquet export.",
    "auto-circuit": (
        "auto-circuit prompt JSON (`load_datasets_from_json`): `<split>.json` holds every row as "
        "{clean, corrupt, answers, wrong_answers}; `clean` is the row's prompt, `corrupt` its p_ABC twin (S2 replaced "
        "by a third name from the run's own names, same token length), answers [' IO'], wrong_answers [' S']. "
        "`word_idxs` (IO, S1, S1+1, S2, end; counted without BOS, auto-circuit adds it) appear in `<split>.json` only "
        "when every prompt shares them; `by_positions/` holds fixed-length groups, each with its own word_idxs and "
        "seq_labels, for token-level circuits. `index.json` lists the files and any skipped rows with the reason. "
        "If your tokenizer adds BOS by itself (`add_bos_token`), load with `prepend_bos=False`."
    ),
    "lm-eval": (
        "An lm-evaluation-harness task group `advgen_ioi` (one multiple_choice task per split, "
        "`advgen_ioi_<split>.yaml`): context = text, choices = [io, s] scored as ' ' + choice, target = io; "
        "`acc` = fraction of prompts where the IO continuation is more likely than S, i.e. LD > 0. "
        "Note: advgen measures with BOS prepended; lm-eval's HF backend adds BOS only with `add_bos_token=True`."
    ),
}

USAGE: dict[str, str] = {
    "jsonl": 'import json\nrows = [json.loads(line) for line in open("OUT/data/clean.jsonl")]  # or datasets.load_dataset("OUT")',
    "csv": 'import pandas as pd\ndf = pd.read_csv("OUT/data/clean.csv")  # or datasets.load_dataset("OUT")',
    "parquet": 'import pyarrow.parquet as pq\nt = pq.read_table("OUT/data/clean.parquet")  # or load_dataset("OUT")',
    "hf": 'from datasets import load_from_disk\ndd = load_from_disk("OUT/hf")\nprint(dd["clean"][0])',
    "auto-circuit": (
        "from pathlib import Path\nfrom auto_circuit.data import load_datasets_from_json\n"
        'train, test = load_datasets_from_json(model, Path("OUT/clean.json"), device="cpu", prepend_bos=True)'
    ),
    "lm-eval": "lm_eval --model hf --model_args pretrained=gpt2,add_bos_token=True \\\n    --include_path OUT --tasks advgen_ioi",
}


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else md_escape(x)


def _circuit_line(c: Circuit | None) -> str:
    """The run's circuit (its record, read from circuit.json): name, head count, heads by role."""
    if c is None:
        return "none (plain `advgen run`: no circuit was used)"
    roles: dict[str, list[str]] = {}
    for h in c.heads:
        roles.setdefault(h.role.value, []).append(str(h.head))
    by_role = "; ".join(f"{md_escape(r)}: {', '.join(md_escape(h) for h in hs)}" for r, hs in roles.items())
    return f"{md_code(c.name)} ({len(c.heads)} heads; {by_role})"


def _cell(x: int | float | None) -> str:
    """A headline figure: absent is blank; null (NaN) is written as before, "None"."""
    if x is None:
        return ""
    return "None" if isinstance(x, float) and math.isnan(x) else _fmt(x)


def _summary_table(summary: Mapping[str, Any], where: str = "summary.json") -> str:
    labels = ("n", "mean LD", "LD > 0", "S > IO", "mean IO prob")
    groups = headlines(summary, where)  # run, attack or scan summary.json, typed (advgen.outputs.run_summary)
    if not groups:
        return "(no summary.json in the run directory)\n"
    lines = ["| group | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for name, h in groups.items():
        lines.append(f"| {md_escape(name)} | " + " | ".join(_cell(x) for x in h.figures()) + " |")
    return "\n".join(lines) + "\n"


def jsonl_features(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """HF `features` of the rows as written to JSONL: scalars typed from every row, dicts and lists as `json`."""
    out, seen = [], list(dict.fromkeys(k for r in rows for k in r))
    for k in seen:
        vals = [r[k] for r in rows if r.get(k) is not None]
        if any(isinstance(v, (dict, list)) for v in vals):
            dtype = "json"
        elif vals and all(isinstance(v, bool) for v in vals):
            dtype = "bool"
        elif vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            dtype = "int64"
        elif vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            dtype = "float64"
        else:
            dtype = "string"
        out.append({"name": k, "dtype": dtype})
    return out


def front_matter(data: RunData, fmt: str, files: Mapping[str, str]) -> dict[str, Any]:
    """The card's YAML header: HF metadata, the load configuration, and the run's provenance."""
    man = data.manifest
    counts = {k: len(v) for k, v in splits(data.rows).items()}
    front: dict[str, Any] = {
        "pretty_name": f"advgen {'IOI' if data.task == 'ioi' else data.task} prompts ({data.run_dir.name})",
        "language": ["en"],
        "license": "unknown",
        "tags": [
            "interpretability",
            "mechanistic-interpretability",
            "indirect-object-identification" if data.task == "ioi" else data.task,
            "adversarial",
        ],
        "task_categories": ["text-generation"],
        "size_categories": [_size_category(len(data.rows))],
    }
    if fmt == "jsonl":
        # nested fields vary in keys between modes, so they load as `json` values: one schema for every split
        front["configs"] = [{"config_name": "default", "data_files": [{"split": k, "path": v} for k, v in files.items()]}]
        front["dataset_info"] = {"features": jsonl_features(data.rows)}
    if fmt in ("csv", "parquet"):
        # configs + features make `datasets.load_dataset(<export dir>)` read every split with one schema
        import datasets

        schema = arrow_table(data.rows, columns(data.rows)).schema
        front["configs"] = [{"config_name": "default", "data_files": [{"split": k, "path": v} for k, v in files.items()]}]
        # split sizes live under advgen_export: `datasets` wants num_bytes beside them in dataset_info
        front["dataset_info"] = {"features": datasets.Features.from_arrow_schema(schema)._to_yaml_list()}
    front[MARKER_KEY] = {
        "format": fmt,
        "model": man.model,
        "model_source": man.model_source,
        "tokenizer_hash": man.tokenizer_hash,
        "seed": man.seed,
        "circuit": None if data.circuit is None else data.circuit.name,
        "command": man.command,
        "versions": dict(man.versions or {}),
        "splits": counts,
    }
    return front


def _or_unknown(v: Any) -> Any:
    """A manifest value, "?" where the manifest does not record it."""
    return "?" if v is None else v


def provenance_md(data: RunData) -> str:
    """'How it was made': every value from the run's manifest, escaped so data cannot inject Markdown or HTML."""
    man = data.manifest
    versions = man.versions or {}
    return f"""## How it was made
- command: {md_code(_or_unknown(man.command))}
- model: {md_code(_or_unknown(man.model))} (source {md_code(_or_unknown(man.model_source))}, \
tokenizer hash {md_code(_or_unknown(man.tokenizer_hash))})
- seed: {md_escape(_or_unknown(man.seed))}; settings: {md_code(dict(man.settings or {}))}
- circuit: {_circuit_line(data.circuit)}
- versions: {", ".join(f"{md_escape(k)} {md_escape(v)}" for k, v in versions.items())}
"""


def adversarial_md(data: RunData, left_out: int | None) -> str:
    """Which breaks the export holds: every one, or only those whose control held (`--attributable-only`)."""
    breaks = [r for r in data.rows if r.get("family") == "attack" and r.get("is_break")]
    if not breaks and left_out is None:
        return ""
    shared = sum(r.get("control_breaks") is True for r in breaks)
    unknown = sum(r.get("control_breaks") is None for r in breaks)
    if left_out is not None:
        what = (
            f"Only attributable breaks (`--attributable-only`): {left_out} breaks whose matched control also broke were "
            f"left out, with their control rows; the {len(breaks)} breaks here all have `control_breaks` = false."
        )
    elif unknown:
        what = (
            f"Every break of the run ({len(breaks)}); this run did not record whether their controls broke "
            "(`control_breaks` is null), so attributable and control-shared breaks cannot be told apart."
        )
    else:
        what = (
            f"Every break of the run ({len(breaks)}), including {shared} whose matched control also broke "
            f"(`control_breaks` = true: the edit alone breaks the model, so they suit a test set but are no evidence for "
            f"the circuit) and {len(breaks) - shared} attributable ones. `advgen export --attributable-only` leaves the "
            "control-shared ones out."
        )
    return f"\n## Adversarial set\n{what}\n"


def _what(data: RunData) -> tuple[str, str]:
    """(short name, long name) of the run's task for the card's prose."""
    if data.task == "ioi":
        return "IOI", "Indirect-object-identification (IOI)"
    return md_escape(data.task), f"Task {md_code(data.task)} (answer and foil in `io` / `s`, also as `answer` / `foil`)"


def dataset_card(data: RunData, fmt: str, files: Mapping[str, str], left_out: int | None = None) -> str:
    """README.md for an export of `data` in `fmt`; `files` maps split -> path inside the export.

    `left_out`: breaks left out as control-shared (`--attributable-only`); None when every break is kept.
    """
    counts = {k: len(v) for k, v in splits(data.rows).items()}
    present = [f for f in FIELDS if any(f in r for r in data.rows)]
    field_lines = "\n".join(f"| `{f}` | {FIELDS[f]} |" for f in present)
    split_lines = "\n".join(f"| {md_code(k)} | {n} | {md_code(files.get(k, ''))} |" for k, n in counts.items())
    body = f"""# advgen {_what(data)[0]} prompts: {md_escape(data.run_dir.name)}

{_what(data)[1]} prompts generated and measured by
advgen (circuit-driven adversarial prompt generation), exported as `{fmt}`.

{provenance_md(data)}
Prompts are rendered from templates with single-token names, places and objects; every metric was
read at each prompt's own END token with BOS prepended. Attack rows (if any) are transformations of
clean prompts aimed at a failure mode the circuit predicts; `pair_id` links them to their clean prompt.

## Splits
| split | rows | file |
|---|---|---|
{split_lines}

{adversarial_md(data, left_out)}
## Measured on the model above (from summary.json)
{_summary_table(data.summary, str(data.run_dir / "summary.json"))}
## Fields
| field | meaning |
|---|---|
{field_lines}

## Format
{FORMAT_NOTES[fmt]}

```python
{USAGE[fmt].replace("OUT", "path/to/this/export")}
```

## Intended use and limits
- Intended for testing interpretability claims about the {_what(data)[0]} circuit (faithfulness, failure modes)
  and for evaluating other models on {_what(data)[0]}-style prompts.
- The metrics describe the model named above only; rerun them (`advgen validate`) for any other model.
- Prompts are synthetic and templated English; they say nothing about natural text and carry the
  name lists' biases (first names, mostly English).
- Attack prompts are selected against one model and one circuit; breaks need not transfer.
"""
    front = front_matter(data, fmt, files)
    front[MARKER_KEY]["attributable_only"] = left_out is not None
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + body
