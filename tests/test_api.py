"""The front door: `import advgen` exposes one function per job, each writing the same files as its command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import advgen
from advgen.cli.main import main
from advgen.core import rundir
from advgen.core.types import AdvgenError

ROOT = Path(__file__).resolve().parents[1]


def _files(d: Path) -> dict[str, bytes]:
    return {
        p.relative_to(d).as_posix(): p.read_bytes()
        for p in sorted(d.rglob("*"))
        if p.is_file() and "journal" not in p.relative_to(d).parts
    }


def test_every_public_name_resolves_and_import_does_not_load_torch() -> None:
    assert sorted(advgen.__all__) == sorted(advgen._EXPORTS)  # the table the lazy loader reads
    for name in advgen.__all__:
        assert getattr(advgen, name) is not None, name
    code = "import sys, advgen; assert 'torch' not in sys.modules, 'import advgen pulled in torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        advgen.nope  # noqa: B018


def test_api_attack_writes_the_same_bytes_as_the_command(tmp_path: Path) -> None:
    args = ["--model", "reference", "--circuit", "reference-ioi", "--budget", "40", "--n-clean", "12", "--seed", "1"]
    assert main(["attack", *args, "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    (tmp_path / "run").rename(tmp_path / "cli")
    cfg = advgen.AttackConfig(budget=40, n_clean=12, seed=1)
    res = advgen.attack("reference", "reference-ioi", cfg, tmp_path / "run")
    assert res.out == tmp_path / "run" and res.summary["evaluations"] == res.run.evals
    cli, api = _files(tmp_path / "cli"), _files(tmp_path / "run")
    assert cli.keys() == api.keys() and "manifest.json" in api
    assert [k for k in cli if cli[k] != api[k]] == []
    command = json.loads(api["manifest.json"])["command"]
    assert command.startswith("advgen attack --model reference ") and "--budget 40 --n-clean 12 --seed 1" in command


def test_api_run_takes_a_loaded_model_and_records_the_equivalent_command(tiny_model, tmp_path: Path) -> None:
    res = advgen.run(tiny_model, n=8, seed=2, out=tmp_path / "r", batch_size=4)
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert man["command"] == f"advgen run --model {tiny_model.name} --n 8 --seed 2 --batch-size 4"
    assert res.summary["n"] == 8
    rundir.check_complete(tmp_path / "r")


def _discover(out: Path, overwrite: bool) -> None:
    # few detector sequences: the run-directory rules are under test here, not the science
    advgen.discover("reference", out, advgen.DiscoverySettings(n=4, detector_seqs=1, detector_len=6), overwrite=overwrite)


def _check_claim(out: Path, overwrite: bool) -> None:
    main_raising(
        [
            "check-claim",
            "reference-ioi",
            "--model",
            "reference",
            "--n",
            "4",
            "--no-progress",
            "--no-ladder",
            "--greedy-steps",
            "1",
            "--out",
            str(out),
            *(["--overwrite"] if overwrite else []),
        ]
    )


@pytest.mark.parametrize("job", ["discover", "check-claim"])
def test_discover_and_check_claim_follow_the_run_directory_rules(job: str, tmp_path: Path) -> None:
    go = _discover if job == "discover" else _check_claim
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(AdvgenError, match="did not write"):
        go(foreign, False)
    assert (foreign / "notes.txt").read_text() == "mine"
    out = tmp_path / "run"
    out.mkdir()
    rundir.write_marker(out, "run", "another-run")  # an advgen directory of another kind
    (out / "manifest.json").write_text("{}")
    with pytest.raises(AdvgenError, match="--overwrite"):
        go(out, False)
    go(out, True)
    rundir.check_complete(out)
    assert (out / rundir.MARKER).is_file() and not (out / rundir.LOCK).exists()
    man = json.loads((out / "manifest.json").read_text())
    assert man["command"].startswith(f"advgen {job} ") and "--model reference" in man["command"] and man["seed"] == 0
    with pytest.raises(AdvgenError, match="being written"):  # a second writer while the first holds the lock
        (out / rundir.LOCK).write_text(json.dumps({"pid": 1, "kind": job, "identity": "x"}))
        go(out, True)


def test_discover_out_is_a_directory_not_a_json_file(tmp_path: Path) -> None:
    with pytest.raises(AdvgenError, match="names the run directory"):
        advgen.discover("reference", tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()


def main_raising(argv: list[str]) -> None:
    """Run the CLI's job for argv and let its AdvgenError through (main() turns it into exit 2)."""
    from advgen.cli.main import build_parser

    args = build_parser().parse_args(argv)
    args.func(args)


def test_manifests_carry_a_schema_version_and_readers_refuse_unknown_ones(tiny_model, tmp_path: Path) -> None:
    from advgen.core.records import MANIFEST_SCHEMA

    advgen.run(tiny_model, n=4, seed=0, out=tmp_path / "r", batch_size=4)
    man_path = tmp_path / "r" / "manifest.json"
    man = json.loads(man_path.read_text())
    assert next(iter(man)) == "schema_version" and man["schema_version"] == MANIFEST_SCHEMA
    advgen.export(tmp_path / "r", "jsonl", tmp_path / "e")  # the current version reads
    man["schema_version"] = MANIFEST_SCHEMA + 1
    man_path.write_text(json.dumps(man))
    (tmp_path / "r" / rundir.MARKER).unlink()  # an edited directory, not a half-written one
    with pytest.raises(
        AdvgenError,
        match=f"manifest.json: manifest schema_version {MANIFEST_SCHEMA + 1}, this advgen reads versions 1 to {MANIFEST_SCHEMA}",
    ):
        advgen.export(tmp_path / "r", "jsonl", tmp_path / "e2")
    with pytest.raises(AdvgenError, match="schema_version"):
        advgen.report(tmp_path / "r", tmp_path / "r.html", attention=False)
    assert not (tmp_path / "e2").exists() and not (tmp_path / "r.html").exists()
