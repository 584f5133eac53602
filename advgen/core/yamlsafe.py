"""YAML the user gives (template packs, distractor files), read with hard limits.

`yaml.safe_load` refuses Python tags but still expands aliases: a 393-byte pack of nested aliases
rendered 77 MB of prompts. `StrictLoader` is a SafeLoader that refuses anchors and aliases
outright (no expansion is ever bounded by the text's size otherwise), refuses a duplicate key (the
last one would silently win), caps a document at `MAX_YAML_CHARS` and a scalar at
`MAX_SCALAR_CHARS`, and refuses a string that cannot be written as UTF-8 (a lone surrogate from a
`"\\ud800"` escape, which would otherwise fail only when a result is written, after a long run).
Every refusal is a `YamlError` naming the file and line.
"""

from __future__ import annotations

from typing import Any

import yaml

from advgen.core.types import AdvgenError

MAX_YAML_CHARS = 1 << 20
"""1 Mi characters: the shipped packs are ~2 KB; a pack is read whole into memory."""
MAX_SCALAR_CHARS = 10_000
"""Longest scalar: a template is one sentence or a short paragraph."""


class YamlError(AdvgenError):
    """A YAML document refused by the strict loader; the message names file and line."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader without anchors/aliases or duplicate keys, with capped scalars; `where` names the file."""

    where = "<yaml>"

    def _fail(self, mark: Any, msg: str) -> YamlError:
        return YamlError(f"{self.where}:{mark.line + 1}: {msg}")

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise self._fail(event.start_mark, f"YAML alias *{event.anchor} refused (anchors and aliases are not allowed)")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise self._fail(event.start_mark, f"YAML anchor &{anchor} refused (anchors and aliases are not allowed)")
        if isinstance(event, yaml.ScalarEvent):
            if len(event.value) > MAX_SCALAR_CHARS:
                raise self._fail(event.start_mark, f"scalar of {len(event.value):,} characters; at most {MAX_SCALAR_CHARS:,}")
            try:
                event.value.encode("utf-8")
            except UnicodeEncodeError as e:
                raise self._fail(
                    event.start_mark, f"text holds {e.object[e.start]!r}, a lone surrogate that cannot be written as UTF-8"
                ) from None
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise self._fail(key_node.start_mark, f"duplicate key {key!r} (first on line {seen[key]})")
                    seen[key] = key_node.start_mark.line + 1
                except TypeError:  # an unhashable key: the base constructor names it
                    continue
        return super().construct_mapping(node, deep)


def load_yaml(text: str, where: str, loader: type[StrictLoader] = StrictLoader) -> Any:
    """One YAML document through `loader`; every failure is a `YamlError` naming `where`."""
    if len(text) > MAX_YAML_CHARS:
        raise YamlError(f"{where}: {len(text):,} characters of YAML; at most {MAX_YAML_CHARS:,}")
    ld: StrictLoader | None = None
    try:
        ld = loader(text)  # the reader refuses control characters here already
        ld.where = where
        return ld.get_single_data()
    except yaml.YAMLError as e:
        raise YamlError(f"{where}: malformed YAML: {str(e)[:300]}") from None
    except ValueError as e:  # a scalar PyYAML cannot convert (e.g. an integer of 5,000 digits)
        raise YamlError(f"{where}: unusable YAML value: {str(e)[:80]}") from None
    except RecursionError:
        raise YamlError(f"{where}: YAML nested too deeply") from None
    finally:
        if ld is not None:
            ld.dispose()
