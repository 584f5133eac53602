"""Exports for interpretability and evaluation tools: auto-circuit's prompt JSON and an
lm-evaluation-harness task.

auto-circuit (`auto_circuit.data.load_datasets_from_json`) wants clean/corrupt pairs of equal token
length, answers and wrong answers, and one `word_idxs` dict per file. Our choice: `clean` is the
row's own prompt (clean, control or attack) and `corrupt` is its p_ABC twin, the prompt with the
second S mention (S2) replaced by a third name, the corruption the IOI paper and auto-circuit's
own IOI task use. So each attack split asks "what does the circuit do on these attack prompts",
with the same corruption as the clean split, and the two prompts of a pair always have equal
length. Rows whose twin cannot be made token-for-token are skipped and counted in index.json.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from advgen.core.files import dumps
from advgen.core.types import AdvgenError
from advgen.outputs.rundata import RunData, columns, splits, table_row
from advgen.tasks.lexicons import resolve_lexicons
from advgen.tasks.registry import task_of_manifest
from advgen.tasks.sample import TaskSpec, render_spec
from advgen.tasks.spec import Task

AC_WORD_KEYS = {"IO": "IO", "S1": "S1", "S1+1": "S1+1", "S2": "S2", "END": "end"}
"""Our slot names -> auto-circuit's IOI word_idxs names (auto_circuit/.../ioi_official.py)."""
LM_EVAL_GROUP = "advgen_ioi"
LM_EVAL_LOADER = "advgen_loader.py"


def run_tokenizer(data: RunData) -> Any:
    """The tokenizer of the run's model (only the tokenizer files are read)."""
    from advgen.model.loading import load_tokenizer

    spec = data.model_spec
    if not spec:
        raise AdvgenError(f"{data.run_dir}/manifest.json names no model; the auto-circuit export needs its tokenizer")
    try:
        return load_tokenizer(spec)
    except AdvgenError as e:
        raise AdvgenError(f"the auto-circuit export needs the tokenizer of the run's model: {e}") from None


def _third_name(row: dict[str, Any], pool: list[str], seed: int) -> str | None:
    """A name from the run's own name pool that is not in the prompt, fixed by seed and text."""
    words = set(re.findall(r"\w+", row["text"]))
    cands = [n for n in pool if n not in words]
    if not cands:
        return None
    h = int(hashlib.sha256(f"{seed}|{row['text']}".encode()).hexdigest(), 16)
    return cands[h % len(cands)]


def abc_twin(row: dict[str, Any], tok: Any, pool: list[str], seed: int) -> tuple[str, int] | str:
    """(corrupt text, BOS offset) or the reason the row has no equal-length twin."""
    text, s = row["text"], row["s"]
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    offset = int(row.get("n_tokens", len(ids))) - len(ids)
    s2 = row["positions"].get("S2")
    if offset not in (0, 1) or s2 is None or not 0 <= s2 - offset < len(ids):
        return "token count or S2 position does not match the text"
    a, b = enc["offset_mapping"][s2 - offset]
    span = text[a:b]
    if span.strip() != s:
        return f"token at S2 is {span!r}, not S {s!r}"
    c = _third_name(row, pool, seed)
    if c is None:
        return "no third name available"
    corrupt = text[:a] + span.replace(s, c, 1) + text[b:]
    if len(tok(corrupt, add_special_tokens=False)["input_ids"]) != len(ids):
        return f"third name {c!r} changes the token count"
    return corrupt, offset


def _seq_labels(tok: Any, text: str, word_idxs: dict[str, int]) -> list[str]:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    labels = [tok.decode([i]) for i in ids]
    for name, i in word_idxs.items():
        if 0 <= i < len(labels):
            labels[i] = name
    return labels


def task_twin(row: dict[str, Any], tok: Any, task: Task, words: dict[str, tuple[str, ...]], seed: int) -> tuple[str, int] | str:
    """A task row's corrupted twin by the task's own rule (the mention given a value fixed by seed and text)."""
    if task.corrupt is None:
        return f"task {task.name!r} defines no corrupted twin"
    values = (row.get("extra") or {}).get("values") or {}
    tmpl = {x.id: x for x in task.templates}.get(str(row.get("template_id")))
    if tmpl is None or not values:
        return "row has no template or slot values of the task"
    pool = [w for w in words[task.slots[task.corrupt.slot]] if w not in values.values()]
    fresh = pool[int(hashlib.sha256(f"{seed}|{row['text']}".encode()).hexdigest(), 16) % len(pool)]
    p = render_spec(task, TaskSpec(tmpl, values, str(row.get("pair_id", "")), fresh), tok, corrupt=True)
    return p.text, 1


def write_auto_circuit(data: RunData, tmp: Path) -> dict[str, str]:
    """<split>.json (all rows) + by_positions/<split>-<k>.json (fixed-length groups) + index.json."""
    tok = run_tokenizer(data)
    pool = sorted({r["io"] for r in data.rows} | {r["s"] for r in data.rows})
    task = task_of_manifest(data.manifest, f"{data.run_dir}/manifest.json") if data.task != "ioi" else None
    words = dict(resolve_lexicons(task, tok).words) if task is not None else {}
    files: dict[str, str] = {}
    index: dict[str, Any] = {}
    for name, rows in splits(data.rows).items():
        prompts, skipped, groups = [], [], {}
        for r in rows:
            twin = task_twin(r, tok, task, words, data.seed) if task is not None else abc_twin(r, tok, pool, data.seed)
            if isinstance(twin, str):
                skipped.append({"pair_id": r.get("pair_id"), "text": r["text"], "reason": twin})
                continue
            corrupt, off = twin
            entry = {
                "clean": r["text"],
                "corrupt": corrupt,
                "answers": [" " + r["io"]],
                "wrong_answers": [" " + r["s"]],
                "pair_id": r.get("pair_id"),
                "template_id": r.get("template_id"),
                "mode": r.get("mode"),
            }
            prompts.append(entry)
            # word_idxs are counted without BOS: auto-circuit adds 1 when it prepends BOS itself.
            widx = {AC_WORD_KEYS.get(k, k): v - off for k, v in sorted(r["positions"].items())}
            groups.setdefault((int(r.get("n_tokens", 0)), dumps(widx)), []).append(entry)
        doc: dict[str, Any] = {"prompts": prompts}
        if len(groups) == 1:
            doc = {"word_idxs": json.loads(next(iter(groups))[1]), **doc}
        (tmp / f"{name}.json").write_text(dumps(doc, indent=1) + "\n", encoding="utf-8")
        files[name] = f"{name}.json"
        group_index = []
        for k, ((_, widx_s), entries) in enumerate(sorted(groups.items())):
            widx = json.loads(widx_s)
            rel = f"by_positions/{name}-{k:03d}.json"
            g = {"seq_labels": _seq_labels(tok, entries[0]["clean"], widx), "word_idxs": widx, "prompts": entries}
            (tmp / rel).parent.mkdir(exist_ok=True)
            (tmp / rel).write_text(dumps(g, indent=1) + "\n", encoding="utf-8")
            group_index.append({"file": rel, "n": len(entries), "template_ids": sorted({str(e["template_id"]) for e in entries})})
        index[name] = {"file": f"{name}.json", "n": len(prompts), "skipped": skipped, "groups": group_index}
    (tmp / "index.json").write_text(dumps(index, indent=1) + "\n", encoding="utf-8")
    return files


# ---- lm-evaluation-harness ---------------------------------------------------------------------

LOADER_PY = '''"""Loads an advgen split for lm-evaluation-harness (referenced by the task YAMLs via !function)."""

import json
from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def load(data_file: str = "", **_metadata):
    """DatasetDict with one `test` split read from data_file (relative to this directory)."""
    with open(HERE / data_file, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
'''


def task_name(split: str) -> str:
    return f"{LM_EVAL_GROUP}_{split}"


def task_yaml(split: str, data_file: str) -> str:
    """One multiple_choice task: context = the prompt, choices = [IO, S], target = IO (index 0).

    lm-eval scores each choice as target_delimiter + choice, i.e. " IO" vs " S" after the prompt,
    which is the sign of advgen's logit difference at END.
    """
    q = json.dumps
    return "\n".join(
        [
            f"task: {task_name(split)}",
            "custom_dataset: !function advgen_loader.load",
            "dataset_kwargs:",
            f"  data_file: {q(data_file)}",
            "test_split: test",
            "output_type: multiple_choice",
            f"doc_to_text: {q('{{text}}')}",
            f"doc_to_choice: {q('{{[io, s]}}')}",
            "doc_to_target: label",
            f"target_delimiter: {q(' ')}",
            "metric_list:",
            "  - metric: acc",
            "    aggregation: mean",
            "    higher_is_better: true",
            "metadata:",
            "  version: 1.0",
            "",
        ]
    )


def group_yaml(names: list[str]) -> str:
    tasks = "\n".join(f"  - {n}" for n in names)
    return (
        f"group: {LM_EVAL_GROUP}\ntask:\n{tasks}\naggregate_metric_list:\n  - metric: acc\n    aggregation: mean\n"
        "    weight_by_size: true\nmetadata:\n  version: 1.0\n"
    )


def write_lm_eval(data: RunData, tmp: Path) -> dict[str, str]:
    """advgen_ioi.yaml (group) + advgen_ioi_<split>.yaml + data/<split>.jsonl + advgen_loader.py."""
    cols = columns(data.rows)
    files: dict[str, str] = {}
    names = []
    for split, rows in splits(data.rows).items():
        rel = f"data/{split}.jsonl"
        (tmp / "data").mkdir(exist_ok=True)
        text = "".join(dumps({**table_row(r, cols), "label": 0}) + "\n" for r in rows)
        (tmp / rel).write_text(text, encoding="utf-8")
        (tmp / f"{task_name(split)}.yaml").write_text(task_yaml(split, rel), encoding="utf-8")
        files[split] = rel
        names.append(task_name(split))
    (tmp / f"{LM_EVAL_GROUP}.yaml").write_text(group_yaml(names), encoding="utf-8")
    (tmp / LM_EVAL_LOADER).write_text(LOADER_PY, encoding="utf-8")
    return files
