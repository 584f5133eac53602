"""Attack-shaped run directories for report and export tests, built from a real plain run's clean rows.

Metrics of the attack and control rows are synthetic (fields per the run-directory contract), so
report and export code is exercised without running the attack engine. `legacy=True` writes the
older summary.json (verdicts and yield only in modes.json / baseline.json).
"""

from __future__ import annotations

import json
import random
from pathlib import Path


def _shifted(row: dict, prefix: str, tok) -> dict | None:
    """row with `prefix` put before its text, positions shifted; None if tokens do not line up."""
    ids = tok(row["text"], add_special_tokens=False)["input_ids"]
    new = tok(prefix + row["text"], add_special_tokens=False)["input_ids"]
    shift = len(new) - len(ids)
    if new[shift:] != ids:
        return None
    out = dict(row, text=prefix + row["text"], n_tokens=row["n_tokens"] + shift)
    out["positions"] = {k: v + shift for k, v in row["positions"].items()}
    return out


def _rows(clean: list[dict], tok, rng: random.Random) -> list[dict]:
    rows: list[dict] = []
    for i, c in enumerate(clean):
        base = dict(c, mode=None, params={}, is_break=False, explained=None, head_signals={}, phase="clean")
        rows.append(base)
        variants = [("duplicate_io", "attack", d, "".join(f"{c['io']} smiled.\n" for _ in range(d))) for d in (1, 2, 3)]
        variants += [("duplicate_io", "control", d, "".join("Someone smiled.\n" for _ in range(d))) for d in (1, 2, 3)]
        variants += [("distractor sentence", "attack", None, f"{c['s']} was tired.\n")]
        for mode, fam, dose, prefix in variants:
            r = _shifted(base, prefix, tok)
            if r is None:
                continue
            ld = c["logit_diff"] - (0.7 * (dose or 1) if fam == "attack" else 0.05) + rng.gauss(0, 0.2)
            params = {"dose": dose, "sentence": prefix.strip()} if dose else {"sentence": prefix.strip(), "insert_at": 0}
            r.update(
                family=fam,
                mode=mode,
                params=params,
                logit_diff=ld,
                s_beats_io=ld < 0,
                is_break=fam == "attack" and ld < 0 < c["logit_diff"],
                explained=(rng.random() < 0.5) if fam == "attack" else None,
                head_signals={"a1.h0:END->IO": rng.random(), "a1.h0:END->S2": rng.random()},
                phase="sample" if i % 2 == 0 else "search",
            )
            rows.append(r)
    return rows


VERDICTS = {
    "duplicate_io": {
        "expected_sign": -1,
        "attack_minus_control": {"mean": -1.3, "low": -1.5, "high": -1.1},
        "n": 12,
        "verdict": "confirmed",
    },
    "distractor sentence": {
        "expected_sign": -1,
        "attack_minus_control": {"mean": 0.8, "low": 0.5, "high": 1.1},
        "n": 12,
        "verdict": "falsified (opposite sign)",
    },
}


def make_attack_run(clean_dir: Path, out: Path, tok, seed: int = 0, legacy: bool = False) -> Path:
    """An attack-shaped run directory built from a plain run's clean rows (synthetic metrics)."""
    from advgen.circuits.format import make_circuit
    from advgen.core.files import atomic_write_text, dumps, jsonl_text
    from advgen.core.types import Role

    rng = random.Random(seed)
    clean = [json.loads(line) for line in (clean_dir / "results.jsonl").read_text().splitlines()]
    rows = _rows(clean, tok, rng)
    out.mkdir(parents=True, exist_ok=True)
    man = json.loads((clean_dir / "manifest.json").read_text())
    circuit = make_circuit(
        "tiny-test",
        man["model"],
        {Role.NAME_MOVER: ["a1.h0", "a1.h2"], Role.S_INHIBITION: ["a0.h1"], Role.INDUCTION: ["a0.h3"]},
        2,
        4,
    )
    circuit.save(out / "circuit.json")
    man["circuit"] = circuit.name
    summary = json.loads((clean_dir / "summary.json").read_text())
    summary["modes"] = {"duplicate_io": {"attack": {"n": 3 * len(clean)}}, "distractor sentence": {"attack": {"n": len(clean)}}}
    baseline = {
        "guided": {"evaluations": 400, "breaks": 6, "breaks_per_1000": 15.0},
        "baseline": {"evaluations": 400, "breaks": 2, "breaks_per_1000": 5.0},
        "ratio": 3.0,
    }
    summary["baseline"] = {"n": 0}
    summary["natural_failure_rate"] = 0.01
    if not legacy:
        summary["yield"] = {
            "guided_per_1000": 15.0,
            "random_per_1000": 5.0,
            "ratio": 3.0,
            "attributable_per_1000": 10.0,
            "attributable_ratio": 2.0,
            "breaks": 6,
            "attributable_breaks": 4,
            "control_shared_breaks": 2,
        }
        for m, v in VERDICTS.items():
            summary["modes"][m].update(
                predicted_sign=v["expected_sign"], seen={**v["attack_minus_control"], "n": v["n"]}, verdict=v["verdict"]
            )
    modes = {"modes": {m: {"prediction": v, "random_sample": {"breaks": 1, "attack": {"n": 12}}} for m, v in VERDICTS.items()}}
    atomic_write_text(out / "results.jsonl", jsonl_text(rows))
    atomic_write_text(out / "summary.json", dumps(summary) + "\n")
    atomic_write_text(out / "manifest.json", dumps(man) + "\n")
    atomic_write_text(out / "modes.json", dumps(modes) + "\n")
    atomic_write_text(out / "baseline.json", dumps(baseline) + "\n")
    atomic_write_text(out / "adversarial.jsonl", jsonl_text(r for r in rows if r["is_break"]))
    return out


def file_bytes(out: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The named files of a run directory, as bytes: what 'same seed, same files' compares."""
    return {f: (out / f).read_bytes() for f in names}


def hand_row(family: str, pair: str, ld: float, phase: str, cand: str | None) -> dict:
    """A hand-made measured attack row (duplicated_io cell 0 for attack and control), every field of the contract."""
    mode = {"clean": None, "baseline": "random"}.get(family, "duplicated_io")
    return {
        "text": f"{family} {pair} {cand}",
        "io": "Mary",
        "s": "John",
        "template_id": "t",
        "order": "BABA",
        "family": family,
        "pair_id": pair,
        "positions": {"IO": 1, "S1": 3, "S2": 7, "END": 9},
        "n_tokens": 10,
        "extra": {},
        "logit_diff": ld,
        "io_logit": 0.0,
        "s_logit": 0.0,
        "io_prob": 0.5,
        "s_prob": 0.5,
        "io_rank": 0,
        "s_beats_io": ld < 0,
        "mode": mode,
        "cell": "duplicated_io:0" if family in ("attack", "control") else None,
        "params": {},
        "head_signals": {},
        "phase": phase,
        "candidate": cand,
    }
