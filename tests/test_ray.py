"""Ray backend on the reference model: the same bytes as one process, through a killed actor and a
`ray start --head` cluster on the loopback address (slow; CI runs them)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Before Ray is imported: nodes bind to 127.0.0.1 only (the test cluster never listens on the network)."""
os.environ.update(LOOPBACK)
HEAD_ENV = {**LOOPBACK, "RAY_AUTH_MODE": "disabled"}
"""The loopback-only test head and its driver skip Ray's token auth (a real cluster keeps it)."""

from advgen.model.backends import LocalBackend, RayBackend, RaySettings, evaluate  # noqa: E402
from advgen.outputs.scan import ScanConfig, run_scan  # noqa: E402

# a mark, not a module-level importorskip: `make test` deselects these slow tests without listing a skip
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is an optional extra: pip install 'advgen[ray]'"),
]
BIN = Path(sys.executable).parent
CFG = ScanConfig(sample=1500, seed=3, unit=128, batch_size=32, distractors=True)


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file() and p.name != ".advgen.lock"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def head() -> Iterator[str]:
    """`ray start --head` on 127.0.0.1 (blocking, so ending this process stops the cluster it started)."""
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    cmd = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--num-cpus",
        "2",
        "--include-dashboard",
        "false",
        "--disable-usage-stats",
        "--temp-dir",
        tmp,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **HEAD_ENV}
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up (exit {proc.poll()})")
            time.sleep(1)
        yield address
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _advgen(*args: str, cwd: Path) -> str:
    env = {**os.environ, **HEAD_ENV, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(BIN / "advgen"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_cli_scan_and_validate_on_a_cluster_by_address(head: str, tmp_path: Path) -> None:
    scan = ["scan", "--model", "reference", "--sample", "800", "--seed", "1", "--unit", "128", "--no-progress", "--out", "s"]
    _advgen(*scan, cwd=tmp_path)
    local = _tree(tmp_path / "s")
    shutil.rmtree(tmp_path / "s")
    printed = _advgen(*scan, "--backend", "ray", "--ray-address", head, "--workers", "2", cwd=tmp_path)
    assert "natural failure rate" in printed
    assert _tree(tmp_path / "s") == local
    _advgen("generate", "--model", "reference", "--n", "300", "--out", "p", cwd=tmp_path)
    val = ["validate", "p/prompts.jsonl", "--model", "reference", "--no-progress", "--out", "v"]
    _advgen(*val, cwd=tmp_path)
    local = _tree(tmp_path / "v")
    shutil.rmtree(tmp_path / "v")
    _advgen(*val, "--backend", "ray", "--ray-address", head, cwd=tmp_path)
    assert _tree(tmp_path / "v") == local


@pytest.fixture(scope="module")
def pool() -> Iterator[RayBackend]:
    """A private local Ray instance with 2 actors, each holding a replica of the reference model."""
    backend = RayBackend("reference", RaySettings(workers=2))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def local_scan(reference_model, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("local") / "scan"
    run_scan(LocalBackend(reference_model), CFG, out)
    return _tree(out)


def test_ray_scan_is_byte_identical_to_local(pool: RayBackend, local_scan: dict[str, bytes], tmp_path: Path) -> None:
    res = run_scan(pool, CFG, tmp_path / "scan")
    assert res.computed_units == 12
    assert _tree(tmp_path / "scan") == local_scan
    assert any(k.startswith("parts/") for k in local_scan)


def test_ray_validate_is_byte_identical_to_one_process(pool: RayBackend, reference_model, tmp_path: Path) -> None:
    from advgen.model.validate import validate
    from advgen.outputs import pipeline

    prompts = pipeline.generate(reference_model.tokenizer, 700, seed=2)
    one = validate(reference_model, prompts, 32)
    assert evaluate(pool, prompts, 32).metrics == one.metrics
    path = tmp_path / "prompts.jsonl"
    pipeline.write_prompts(tmp_path, prompts, {"model": "reference"})
    pipeline.validate_rows(reference_model, path, tmp_path / "out", 32)
    local = _tree(tmp_path / "out")
    shutil.rmtree(tmp_path / "out")
    pipeline.validate_rows(reference_model, path, tmp_path / "out", 32, backend=pool)
    assert _tree(tmp_path / "out") == local


class KillOne:
    """Passes results through and SIGKILLs one actor's process (as the OOM killer would) after the second."""

    def __init__(self, inner: RayBackend, pid: int) -> None:
        self.inner, self.pid, self.killed = inner, pid, False

    def map(self, fn: Any, units: Any) -> Iterator[Any]:
        for k, result in enumerate(self.inner.map(fn, units)):
            if k == 1 and not self.killed:
                os.kill(self.pid, signal.SIGKILL)
                self.killed = True
            yield result


def test_killed_actor_mid_run_gives_the_same_output(pool: RayBackend, local_scan: dict[str, bytes], tmp_path: Path) -> None:
    before = pool.worker_pids()
    killer = KillOne(pool, before[0])
    run_scan(killer, CFG, tmp_path / "scan")  # type: ignore[arg-type]
    assert killer.killed
    after = pool.worker_pids()
    assert after[0] != before[0] and after[1] == before[1]  # Ray restarted the killed actor
    assert _tree(tmp_path / "scan") == local_scan


def test_ray_attack_evaluation_gives_the_same_rows(pool: RayBackend, reference_model, tmp_path: Path) -> None:
    from advgen.attacks.attack_setup import AttackConfig
    from advgen.attacks.search import run_attack
    from advgen.circuits.format import resolve_circuit

    circuit = resolve_circuit("reference-ioi", reference_model.n_layers, reference_model.n_heads)
    cfg = AttackConfig(budget=160, n_clean=40, seed=2, batch_size=32, modes=("duplicated_io",))
    here = run_attack(reference_model, circuit, cfg, tmp_path / "local")
    there = run_attack(reference_model, circuit, cfg, tmp_path / "ray", backend=pool)
    assert there.rows == here.rows and there.evals == here.evals


def test_a_user_error_on_a_worker_is_reported_not_retried(pool: RayBackend, reference_model) -> None:
    from advgen.core.types import AdvgenError, PromptSet
    from advgen.model.backends import validate_unit
    from advgen.outputs.pipeline import generate

    prompts = generate(reference_model.tokenizer, 8, seed=1)
    with pytest.raises(AdvgenError, match="tokenized with tokenizer"):
        list(pool.map(validate_unit, [(PromptSet(prompts.prompts, "not-this-tokenizer"), 32)]))


def test_a_local_run_cut_short_resumes_on_ray_with_the_same_bytes(
    pool: RayBackend, reference_model, local_scan: dict[str, bytes], tmp_path: Path
) -> None:
    from advgen.outputs.scan import Interrupted

    with pytest.raises(Interrupted):
        run_scan(LocalBackend(reference_model), CFG, tmp_path / "scan", stop_after_units=5)
    res = run_scan(pool, CFG, tmp_path / "scan", resume=True)
    assert (res.reused_units, res.computed_units) == (5, 7)
    assert _tree(tmp_path / "scan") == local_scan
