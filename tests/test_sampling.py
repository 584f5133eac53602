"""pop_chunk: a chunk never holds two candidates of one unit whose shared control is still unknown."""

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
