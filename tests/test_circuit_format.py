"""Circuit files: bad ones fail with errors that name the problem; the built-in GPT-2 circuit loads."""

from __future__ import annotations

import json

import pytest

from advgen.circuits.format import Circuit, CircuitError, resolve_circuit
from advgen.core.types import AdvgenError, Head, Role


def _write(tmp_path, obj, name="c.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def test_builtin_gpt2_circuit_loads_with_26_heads_and_7_roles():
    c = resolve_circuit("gpt2-small-ioi", 12, 12)
    assert len(c) == 26
    assert c.roles == frozenset(Role)
    assert Head(9, 9) in c.heads_with(Role.NAME_MOVER)
    assert c.positions_of(Head(2, 2)) == ("S1+1",)


@pytest.mark.parametrize(
    "heads, expect",
    [
        ([{"head": "a1.h0", "role": "copy_suppressor"}], "unknown role 'copy_suppressor'"),
        ([{"head": "a1.h0", "role": "name_mover", "positions": ["S3"]}], "unknown position(s) ['S3']"),
        ([{"head": "a1.h0", "role": "name_mover"}, {"head": "a1.h0", "role": "induction"}], "a1.h0 listed twice"),
        ([{"head": "layer1head0", "role": "name_mover"}], "bad head name 'layer1head0'"),
        ([{"role": "name_mover"}], "needs 'head' and 'role'"),
    ],
)
def test_bad_circuit_files_name_the_problem(tmp_path, heads, expect):
    p = _write(tmp_path, {"name": "bad", "heads": heads})
    with pytest.raises(CircuitError) as e:
        Circuit.load(p)
    assert expect in str(e.value)
    assert str(p) in str(e.value)


def test_head_and_layer_out_of_range_are_named(tmp_path):
    p = _write(tmp_path, {"name": "c", "heads": [{"head": "a12.h0", "role": "name_mover"}]})
    with pytest.raises(CircuitError, match=r"a12\.h0 has layer 12, model has layers 0\.\.11"):
        resolve_circuit(p, 12, 12)
    p = _write(tmp_path, {"name": "c", "heads": [{"head": "a1.h6", "role": "name_mover"}]}, "d.json")
    with pytest.raises(CircuitError, match=r"a1\.h6 has head index 6, model has heads 0\.\.5"):
        resolve_circuit(p, 4, 6)


def test_bad_json_names_file_and_line(tmp_path):
    p = _write(tmp_path, '{"name": "c",\n "heads": [\n}')
    with pytest.raises(CircuitError, match=r"not valid JSON \(line 3"):
        Circuit.load(p)


def test_unknown_builtin_and_missing_file_are_advgen_errors(tmp_path):
    with pytest.raises(AdvgenError, match="built-ins"):
        resolve_circuit("no-such-circuit")
    with pytest.raises(AdvgenError, match="not found"):
        resolve_circuit(tmp_path / "missing.json")


def test_round_trip_keeps_roles_positions_scores(tmp_path):
    c = resolve_circuit("gpt2-small-ioi")
    out = c.save(tmp_path / "rt.json")
    d = Circuit.load(out)
    assert d.to_dict() == c.to_dict()


def test_builtin_files_load_and_save_unchanged(tmp_path):
    """Every built-in circuit loads and is written back unchanged: format 1 without MLP nodes, format 2 with them."""
    from advgen.circuits.format import BUILTIN_DIR, FORMAT, FORMAT_MLP, builtin_names

    for name in builtin_names():
        c = Circuit.load(BUILTIN_DIR / f"{name}.json")
        assert json.loads((BUILTIN_DIR / f"{name}.json").read_text())["format"] == (FORMAT_MLP if c.mlps else FORMAT)
        out = c.save(tmp_path / f"{name}.json")
        assert json.loads(out.read_text()) == json.loads((BUILTIN_DIR / f"{name}.json").read_text())


def test_format_2_mlp_nodes_round_trip_and_are_range_checked(tmp_path):
    d = {
        "format": "advgen-circuit/2",
        "name": "c",
        "n_layers": 4,
        "n_heads": 4,
        "heads": [{"head": "a2.h1", "role": "name_mover"}],
        "mlps": [{"node": "m3", "positions": ["END"], "scores": {"act_END": -0.2}, "note": "why"}, {"node": "m0"}],
    }
    c = Circuit.from_dict(d)
    assert [(m.node, m.positions) for m in c.mlps] == [("m3", ("END",)), ("m0", ("END",))]
    back = Circuit.load(c.save(tmp_path / "c.json"))
    assert back.to_dict()["format"] == "advgen-circuit/2" and [m.node for m in back.mlps] == ["m0", "m3"]
    assert back.mlps[1].scores == {"act_END": -0.2} and len(back) == 1
    with pytest.raises(CircuitError, match="MLP node m3 is outside"):
        Circuit.from_dict(dict(d, n_layers=None, n_heads=None, heads=[])).check_against(2, 4)


@pytest.mark.parametrize(
    "mlps, message",
    [
        ([{"node": "a3"}], "'node' like 'm3'"),
        ([{"node": "m1"}, {"node": "m1"}], "m1 listed twice"),
        ([{"node": "m1", "positions": ["S9"]}], r"mlps\[0\]: MLP node m1 has unknown position"),
        ([{"node": "m9"}], "MLP node m9 is outside"),
        ("m1", "'mlps' must be a list"),
    ],
)
def test_bad_mlp_nodes_are_named(mlps, message):
    d = {"format": "advgen-circuit/2", "n_layers": 4, "n_heads": 4, "heads": [], "mlps": mlps}
    with pytest.raises(CircuitError, match=message):
        Circuit.from_dict(d, "f.json")


def test_mlp_nodes_in_a_format_1_file_are_refused():
    with pytest.raises(CircuitError, match="need \"format\": 'advgen-circuit/2'"):
        Circuit.from_dict({"format": "advgen-circuit/1", "heads": [], "mlps": [{"node": "m1"}]}, "f.json")
