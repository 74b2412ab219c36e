"""Milvus boolean expressions the index writes: a metadata filter (narrowed to the tenant's
partition when it names one), lists of asset ids, and string literals."""

from __future__ import annotations

import json
from collections.abc import Sequence

from indexers.milvus.schema import MAX_PARTITION_BYTES
from pipeline.filters import And, Compare, Filter, FilterError, In, Node, Not, Or
from pipeline.schema import Asset


def milvus_expression(parsed: Filter | None, partition_key: str | None) -> str | None:
    """The filter as a Milvus expression over the metadata field, or None when there is no
    filter or Milvus cannot express it. ``in`` lists become ``or`` chains (Milvus Lite
    refuses ``in`` on a JSON path). A top-level ``key == "tenant"`` on the partition key
    also names the partition field, so Milvus searches that partition only."""
    if parsed is None:
        return None
    try:
        expression = Filter(parsed.expression, _without_in(parsed.root)).to_milvus("metadata")
    except FilterError:
        return None
    tenant = _required_partition(parsed.root, partition_key)
    if tenant is not None:
        expression = f"partition == {literal(tenant)} and {expression}"
    return expression


def partition_value(asset: Asset, key: str) -> str:
    """The asset's value of the partition key; ValueError unless it is a short string."""
    value = asset.metadata.get(key)
    if not isinstance(value, str) or len(value.encode("utf-8")) > MAX_PARTITION_BYTES:
        raise ValueError(
            f"asset {asset.id!r}: metadata {key!r} (index.milvus.partition_key) must be a "
            f"string of at most {MAX_PARTITION_BYTES} bytes, got {value!r:.80}"
        )
    return value


def ids_in(ids: Sequence[str]) -> str:
    return f"asset_id in [{', '.join(literal(i) for i in ids)}]"


def literal(text: str) -> str:
    """A Milvus string literal: JSON's escaping, which Milvus's parser reads back."""
    return json.dumps(text, ensure_ascii=False)


def _without_in(node: Node) -> Node:
    if isinstance(node, In):
        equalities = tuple(Compare(node.path, "==", value) for value in node.values)
        return equalities[0] if len(equalities) == 1 else Or(equalities)
    if isinstance(node, Not):
        return Not(_without_in(node.operand))
    if isinstance(node, And | Or):
        return type(node)(tuple(_without_in(operand) for operand in node.operands))
    return node


def _required_partition(node: Node, partition_key: str | None) -> str | None:
    if partition_key is None:
        return None
    conjuncts = node.operands if isinstance(node, And) else (node,)
    for conjunct in conjuncts:
        if (
            isinstance(conjunct, Compare)
            and conjunct.path == (partition_key,)
            and conjunct.op == "=="
            and isinstance(conjunct.value, str)
        ):
            return conjunct.value
    return None
