"""The layout of the Milvus collection: one vector field per Milvus-served recall channel.

An asset is stored as one or more entities ("slots"). Its head slot carries everything the
asset has once: its CLIP text vector (``clip_text``), its ``text_dense`` vector when the
index has that field, and its first CLIP image vector (``clip_image``: the image, or the
first sampled video frame). Further video frames take one slot each. Every vector field
has a boolean ``has_<field>`` beside it: a slot without that vector holds zeros there and
the flag is false, so every search on a field is restricted to ``has_<field> == true``
(Milvus Lite returns rows whose nullable vector is null, so nullable vectors would not do).

Keeping an asset's channel vectors on ONE entity is what makes Milvus's native
``hybrid_search`` fuse per asset: its rankers sum over requests per primary key, so vectors
on different entities of one asset would never be fused with each other.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from indexers.store import EmbeddedVector
from pipeline.schema import Asset
from pipeline.settings import IndexConfig

CLIP_IMAGE = "clip_image"
CLIP_TEXT = "clip_text"
TEXT_DENSE = "text_dense"
CLIP_FIELDS = (CLIP_IMAGE, CLIP_TEXT)
OPTIONAL_FIELDS = (TEXT_DENSE,)
"""Vector fields a collection may have beyond the CLIP ones, with a dim of their own."""

MAX_ID_BYTES = 65_535
MAX_PARTITION_BYTES = 512
MAX_TOPK = 16_384
"""Milvus refuses a search limit above this: over-fetching stops there."""
SCALAR_OUTPUT = ["asset_id", "modality", "timestamp", "metadata"]
_INDEX_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivf_flat": "IVF_FLAT", "ivf_pq": "IVF_PQ"}


def has(field: str) -> str:
    """The name of the flag that says a slot holds a ``field`` vector."""
    return f"has_{field}"


def create_collection(
    client: Any, data_types: Any, config: IndexConfig, dim: int, extra: Mapping[str, int]
) -> None:
    """Create the collection: CLIP fields of ``dim`` and the ``extra`` fields (name -> dim)."""
    settings = config.milvus
    schema = client.create_schema(auto_id=True, enable_dynamic_field=False)
    schema.add_field("row_id", data_types.INT64, is_primary=True)
    schema.add_field("asset_id", data_types.VARCHAR, max_length=MAX_ID_BYTES)
    schema.add_field("generation", data_types.INT64)
    schema.add_field("head", data_types.BOOL)
    schema.add_field("modality", data_types.VARCHAR, max_length=8)
    schema.add_field("timestamp", data_types.DOUBLE, nullable=True)
    fields = {**dict.fromkeys(CLIP_FIELDS, dim), **extra}
    for field, field_dim in fields.items():
        schema.add_field(has(field), data_types.BOOL)
        schema.add_field(field, data_types.FLOAT_VECTOR, dim=field_dim)
    schema.add_field("metadata", data_types.JSON)
    schema.add_field("record", data_types.JSON)
    if settings.partition_key is not None:
        schema.add_field(
            "partition", data_types.VARCHAR, max_length=MAX_PARTITION_BYTES, is_partition_key=True
        )
    index_params = client.prepare_index_params()
    for field in fields:
        index_params.add_index(
            field,
            index_type=_INDEX_TYPES[config.kind],
            metric_type="IP",
            params=_build_params(config, fields[field]),
        )
    client.create_collection(
        settings.collection, schema=schema, index_params=index_params, consistency_level="Strong"
    )


def checked_extra_fields(fields: Mapping[str, int]) -> dict[str, int]:
    """``fields`` (optional vector field -> dim) when each is one this layout knows."""
    for field, dim in fields.items():
        if field not in OPTIONAL_FIELDS or not isinstance(dim, int) or dim < 1:
            raise ValueError(
                f"extra vector field {field!r}: must be one of {list(OPTIONAL_FIELDS)} with a "
                f"positive dim, got {dim!r}"
            )
    return dict(fields)


def vector_fields(client: Any, collection: str) -> dict[str, int]:
    """The collection's vector fields and their dims; raises ValueError for a collection in
    another layout (one built before the per-channel fields)."""
    described = client.describe_collection(collection)
    dims = {
        field["name"]: int(field.get("params", {}).get("dim", 0))
        for field in described["fields"]
        if "VECTOR" in getattr(field.get("type"), "name", str(field.get("type")))
    }
    if not set(CLIP_FIELDS) <= set(dims):
        raise ValueError(
            f"Milvus collection {collection!r} has vector fields {sorted(dims)}, not the "
            f"per-channel layout {list(CLIP_FIELDS)} this version writes; rebuild the index"
        )
    return dims


def slots_of(
    asset: Asset,
    vectors: Sequence[EmbeddedVector],
    fields: Mapping[str, int],
    extra: Mapping[str, np.ndarray],
) -> Iterator[dict[str, Any]]:
    """The entities of one asset, less the bookkeeping fields (ids, generation, record).
    ``extra`` holds the asset's vectors for the optional fields (``text_dense``)."""
    texts = [v for v in vectors if v.modality == "text"]
    pictures = [v for v in vectors if v.modality != "text"]
    for position in range(max(len(texts), len(pictures), 1)):
        text = texts[position] if position < len(texts) else None
        picture = pictures[position] if position < len(pictures) else None
        slot: dict[str, Any] = {
            "head": position == 0,
            "modality": picture.modality if picture is not None else "text",
            "timestamp": picture.timestamp if picture is not None else None,
        }
        _put(slot, CLIP_IMAGE, picture.vector if picture is not None else None, fields)
        _put(slot, CLIP_TEXT, text.vector if text is not None else None, fields)
        for field in fields:
            if field not in CLIP_FIELDS:
                _put(slot, field, extra.get(field) if position == 0 else None, fields)
        yield slot


def _put(slot: dict[str, Any], field: str, vector: np.ndarray | None, fields: Mapping[str, int]):
    slot[has(field)] = vector is not None
    slot[field] = (vector if vector is not None else np.zeros(fields[field], np.float32)).tolist()


def _build_params(config: IndexConfig, dim: int) -> dict[str, int]:
    if config.kind == "hnsw":
        return {"M": config.hnsw.m, "efConstruction": config.hnsw.ef_construction}
    if config.kind == "ivf_flat":
        return {"nlist": config.ivf.nlist}
    if config.kind == "ivf_pq":
        # pq_m must divide the CLIP dim (validated); other fields fall back to one
        # sub-quantizer per dimension when it does not divide theirs.
        m = config.ivf.pq_m if dim % config.ivf.pq_m == 0 else dim
        return {"nlist": config.ivf.nlist, "m": m, "nbits": config.ivf.pq_bits}
    return {}


def search_params(config: IndexConfig) -> dict[str, Any]:
    if config.kind == "hnsw":
        return {"metric_type": "IP", "params": {"ef": config.hnsw.ef_search}}
    if config.kind in ("ivf_flat", "ivf_pq"):
        return {"metric_type": "IP", "params": {"nprobe": config.ivf.nprobe}}
    return {"metric_type": "IP", "params": {}}
