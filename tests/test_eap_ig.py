"""`advgen export --format eap-ig`: names and structure against a hand-written EAP-IG graph file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from advgen.circuits.format import Circuit, CircuitHead
from advgen.core.types import AdvgenError, Head, Role
from advgen.outputs import eap_ig
from advgen.outputs.exporters import export

EXAMPLE = Path(__file__).parent / "data" / "eap_ig_example.json"


def _two_layer(n_heads: int | None = 1) -> Circuit:
    return Circuit("tiny", "tiny-model", (CircuitHead(Head(1, 0), Role.NAME_MOVER, ("END",), {"act_ALL": -0.8}),), 2, n_heads)


def test_export_matches_the_hand_written_file(tmp_path: Path) -> None:
    src = tmp_path / "circuit.json"
    _two_layer().save(src)
    out = export(src, "eap-ig", tmp_path / "exp")
    got = json.loads((out / "graph.json").read_text(encoding="utf-8"))  # a plain JSON reader
    want = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert got["cfg"] == want["cfg"]
    assert got["nodes"] == want["nodes"]  # same names, same in_graph
    assert {k: v["in_graph"] for k, v in got["edges"].items()} == {k: v["in_graph"] for k, v in want["edges"].items()}
    assert got["edges"]["a1.h0->logits"]["score"] == pytest.approx(-0.8)  # node-level: the source head's act_ALL
    assert got["advgen"]["level"] == "node" and (out / "README.md").is_file()


def test_edge_scores_from_discovery_matrices_and_gpt2_counts() -> None:
    L, H = 2, 1
    m = {
        "act_ALL": np.array([[-0.1], [-0.8]]),
        "pp_logits": np.array([[0.05], [-0.7]]),
        "pp_queries": np.array([[-0.3], [np.nan]]),
        "pp_keys": np.array([[0.0], [np.nan]]),
        "pp_values": np.array([[-0.2], [np.nan]]),
    }
    g = eap_ig.eap_ig_graph(_two_layer(), m)
    assert g["edges"]["a1.h0->logits"]["score"] == pytest.approx(-0.7)  # measured edge beats the node score
    assert g["edges"]["a0.h0->a1.h0<q>"]["score"] == pytest.approx(-0.3)
    assert g["edges"]["a0.h0->m1"]["score"] == pytest.approx(-0.1)  # not measured: node-level
    assert g["advgen"]["level"] == "edge+node" and "a0.h0->a1.h0<v>" in g["advgen"]["edge_scored"]
    # GPT-2 small's graph has 158 nodes and 32,491 edges (MIB's count for GPT-2)
    assert len(eap_ig.node_names(12, 12)) == 158 and len(eap_ig.edges(12, 12)) == 32491
    assert len({n for _, _, n in eap_ig.edges(L, H)}) == len(eap_ig.edges(L, H))


def test_bad_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(AdvgenError, match="n_layers"):
        eap_ig.eap_ig_graph(_two_layer(None))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdvgenError, match="holds no circuit"):
        export(tmp_path / "empty", "eap-ig", tmp_path / "exp")


def test_the_export_job_the_cli_calls_takes_eap_ig(tmp_path: Path) -> None:
    from advgen.jobs.reports import export as export_job

    out = export_job("planted-ioi", "eap-ig", tmp_path / "exp", only_attributable=False)
    g = json.loads((out / "graph.json").read_text(encoding="utf-8"))
    assert [n for n, kept in g["nodes"].items() if kept and n.startswith("a")] == ["a0.h0", "a0.h1", "a1.h2", "a2.h1", "a3.h0"]
