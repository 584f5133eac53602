"""pop_chunk: no two candidates of one unknown-control unit per chunk; value_draws: distinct, seeded draws."""

from __future__ import annotations

from dataclasses import dataclass

from advgen.attacks.sampling import pop_chunk


@dataclass(frozen=True)
class C:
    cid: str
    cell: str
    unit: str


def test_a_second_sibling_of_an_unknown_unit_gives_way_to_the_next_candidate() -> None:
    q = {"a": [C("1", "a", "u"), C("2", "a", "u"), C("3", "a", "v")]}
    assert [c.cid for c in pop_chunk(q, ["a", "a"], set())] == ["1", "3"]
    assert [c.cid for c in q["a"]] == ["2"]


def test_siblings_of_a_known_unit_and_a_queue_of_siblings_only_are_taken_in_order() -> None:
    q = {"a": [C("1", "a", "u"), C("2", "a", "u")], "b": [C("3", "b", "w"), C("4", "b", "w")]}
    assert [c.cid for c in pop_chunk(q, ["a", "a", "b", "b"], {"u"})] == ["1", "2", "3", "4"]


def test_value_draws_are_distinct_and_cover_a_small_space() -> None:
    import random

    from advgen.attacks.task_candidates import DRAWS, value_draws

    small = value_draws(["01", "02", "03"], 2, random.Random(0))
    assert sorted(map(tuple, small)) == sorted({(a, b) for a in ("01", "02", "03") for b in ("01", "02", "03") if a != b})
    big = value_draws([f"{i:02d}" for i in range(60)], 2, random.Random(1))
    assert len(big) == DRAWS and len({tuple(v) for v in big}) == DRAWS and all(v[0] != v[1] for v in big)
    assert big == value_draws([f"{i:02d}" for i in range(60)], 2, random.Random(1))
