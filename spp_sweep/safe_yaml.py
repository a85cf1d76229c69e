"""YAML files read safely: safe tags only, no key given twice, bounded in size and depth.

A study file, and the copy a sweep folder keeps of it, may come from anyone; the analysis reads
the copy too, so this lives below both (PyYAML only).
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_YAML_VALUES = 100_000  # values a study file may expand to through its aliases (&anchor / *alias)
MAX_YAML_DEPTH = 32  # mappings and lists inside each other; a study needs 5


class _StudyLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no tags that build objects) that also refuses a key given twice in
    one mapping: YAML would keep the last silently (``spp:`` twice drops the first's settings)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        merged: set[Any] = set()  # keys a merge (<<: *base) brings; one also written here is given twice
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                merged.update(inner.value for source in sources if isinstance(source, yaml.MappingNode)
                              for inner, _ in source.value if isinstance(inner, yaml.ScalarNode))
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if isinstance(key_node, yaml.ScalarNode) and key_node.value in merged:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key_node.value!r} is given by a merge "
                                                        "(<<) and again here; keep one", key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeLoader says so itself
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} appears twice in one mapping; "
                                                        "keep one", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], depth: int = 0) -> int:
    """How many values ``node`` stands for once every alias is expanded (each node counted once
    per place it appears, computed once per node): a few KB of nested aliases can stand for
    billions (the "billion laughs"), which no study needs. Nesting deeper than MAX_YAML_DEPTH
    raises (before any recursion could exhaust the stack)."""
    if depth > MAX_YAML_DEPTH:
        raise yaml.YAMLError(f"it nests mappings and lists more than {MAX_YAML_DEPTH} deep; a study needs a few levels")
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = MAX_YAML_VALUES + 1  # a cycle counts as too large
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, sizes, depth + 1) + _expanded_size(v, sizes, depth + 1)
                       for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, sizes, depth + 1) for v in node.value)
    else:
        size = 1
    sizes[id(node)] = min(size, MAX_YAML_VALUES + 1)
    return sizes[id(node)]


MAX_YAML_BYTES = 4 * 2**20  # a study file is a few KB


def read_yaml(text: str) -> Any:
    """A study file's YAML: safe tags only, no duplicate keys, at most MAX_YAML_VALUES values
    nested at most MAX_YAML_DEPTH deep, at most MAX_YAML_BYTES long (yaml.YAMLError otherwise)."""
    if len(text) > MAX_YAML_BYTES:
        raise yaml.YAMLError(f"it is {len(text):,} characters long; a study file is a few thousand")
    loader = _StudyLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:  # PyYAML composes nested nodes recursively
            raise yaml.YAMLError(f"it nests mappings and lists more than {MAX_YAML_DEPTH} deep; a study needs a "
                                 "few levels") from None
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise yaml.YAMLError(f"it expands to more than {MAX_YAML_VALUES:,} values through its aliases "
                                 "(&anchor / *alias); write the values out")
        return loader.construct_document(node)
    finally:
        loader.dispose()
