"""Text channels kept in step with the store: upserts, deletes and crash catch-up."""

from __future__ import annotations

import pytest

from indexers.backends import open_index
from indexers.build import build_index, open_channels
from indexers.channel_set import ChannelSet
from indexers.store import EmbeddedVector
from pipeline.schema import Asset

pytest.importorskip("bm25s", reason="the bm25 channel needs the 'text' extra")

TEXTS = {
    "a": "the red fox jumps over the fence",
    "b": "a quiet harbour with fishing boats",
    "c": "volcanic ash covered the village",
}


@pytest.fixture
def bm25_config(tiny_config):
    return type(tiny_config).model_validate(
        {**tiny_config.model_dump(), "text_channels": [{"backend": "bm25"}]}
    )


def _manifest(tmp_path, texts):
    import json

    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in texts.items()))
    return path


def _store_only_upsert(index, embedder, asset):
    vector = embedder.embed_texts([asset.text])[0]
    index.upsert_many([(asset, [EmbeddedVector(modality="text", vector=vector)])])
    index.commit()


def test_add_upserts_and_textless_assets_leave(tmp_path, bm25_config):
    channels = ChannelSet.open(tmp_path, bm25_config.text_channels)
    channels.add(Asset(id=i, text=t) for i, t in TEXTS.items())
    channels.add([Asset(id="a", text="now about volcanic ash"), Asset(id="b", image=tmp_path)])
    channels.save()
    reopened = ChannelSet.open(tmp_path, bm25_config.text_channels)
    assert reopened.channel("bm25").ids() == {"a", "c"}
    assert {hit.id for hit in reopened.search("bm25", "volcanic ash", k=5)} == {"a", "c"}
    assert reopened.search("bm25", "red fox fence", k=5) == []
    assert reopened.delete(["c", "unknown"]) == 1
    with pytest.raises(KeyError, match="text_dense"):
        reopened.search("text_dense", "x", k=1)


def test_reconcile_catches_up_after_a_crash_before_the_channel_save(
    tmp_path, bm25_config, tiny_embedder
):
    out = tmp_path / "out"
    build_index(bm25_config, tiny_embedder, _manifest(tmp_path, TEXTS), out)
    # What a kill between the store commit and the channel save leaves: the store holds a
    # new asset and has lost one that the saved channel still holds.
    with open_index(out, embedder=tiny_embedder) as index:
        _store_only_upsert(index, tiny_embedder, Asset(id="d", text="lighthouse keeper diary"))
        index.delete(["b"])
        index.commit()
    stale = ChannelSet.open(out, bm25_config.text_channels)
    assert stale.channel("bm25").ids() == {"a", "b", "c"}
    with open_index(out, embedder=tiny_embedder) as index:
        channels = open_channels(index, out, bm25_config)
        channels.save()
    assert channels.channel("bm25").ids() == {"a", "c", "d"}
    reopened = ChannelSet.open(out, bm25_config.text_channels)
    assert reopened.search("bm25", "lighthouse keeper", k=1)[0].id == "d"
    assert reopened.channel("bm25").ids() == {"a", "c", "d"}


def test_channel_added_to_an_existing_index_is_backfilled(
    tmp_path, tiny_config, bm25_config, tiny_embedder
):
    out = tmp_path / "out"
    build_index(tiny_config, tiny_embedder, _manifest(tmp_path, TEXTS), out)
    more = _manifest(tmp_path, {"e": "glacier melt water in spring"})
    build_index(bm25_config, tiny_embedder, more, out, mode="upsert")
    channels = ChannelSet.open(out, bm25_config.text_channels)
    assert channels.channel("bm25").ids() == {"a", "b", "c", "e"}
    assert channels.search("bm25", "fishing boats harbour", k=1)[0].id == "b"
