"""Every index backend against one lifecycle battery, and filtered search on every backend
against a NumPy brute force over the assets the filter matches (Python's ``Filter.matches``
is the reference semantics; tests/test_filters.py holds SQLite to it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from indexers.backends import SearchIndex, create_index, open_index, open_or_create_index
from indexers.index import EmbeddedVector
from indexers.manifest import IndexExistsError
from pipeline.config import Config, validate_config
from pipeline.filters import parse_filter
from pipeline.schema import Asset
from tests.index_support import (
    DIM,
    KINDS,
    MODEL,
    brute_force,
    config_for,
    low_rank_unit_vectors,
    random_basis,
    recall,
    text_item,
    unit_vectors,
    video_item,
)

MILVUS = "milvus"
BACKENDS = (*KINDS, MILVUS)
"""FAISS kinds by name, and Milvus (FLAT: exact, and CI-sized with Milvus Lite)."""


def backend_config(backend: str, **milvus: object) -> Config:
    if backend == MILVUS:
        pytest.importorskip("milvus_lite", reason="needs vlsearch[milvus]")
        return config_for("flat", backend="milvus", milvus=milvus)
    return config_for(backend)


def new_backend_index(directory: Path, backend: str, **milvus: object) -> SearchIndex:
    return create_index(directory, backend_config(backend, **milvus), MODEL, DIM)


# -- lifecycle ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_lifecycle_battery(tmp_path, backend):
    rng = np.random.default_rng(5)
    directory = tmp_path / backend
    first = unit_vectors(rng, 120)
    index = new_backend_index(directory, backend)
    index.upsert_many([text_item(f"a{i}", v, n=i) for i, v in enumerate(first)])
    index.upsert_many([video_item("clip", unit_vectors(rng, 6))])
    assert (len(index), index.vector_count()) == (121, 126)
    index.commit()
    index.close()
    with pytest.raises(IndexExistsError):
        new_backend_index(directory, backend)

    # Reopen (the manifest names the backend): everything is still there.
    index = open_index(directory, model_id=MODEL)
    assert index.manifest.index.backend == ("milvus" if backend == MILVUS else "faiss")
    assert (len(index), index.vector_count()) == (121, 126)
    assert "a7" in index and "nope" not in index and 7 not in index
    assert index.get("a7") == Asset(id="a7", text="text of a7", metadata={"n": 7})
    assert index.get("clip") == Asset(id="clip", video=Path("/videos/clip.mp4"))
    assert index.get("nope") is None
    many = index.get_many(["clip", "nope", "a7", "a3", "a7"])
    assert many == {name: index.get(name) for name in ("clip", "a7", "a3")}
    assert index.get_many([]) == {}
    top = index.search_vectors(first[7], k=1)[0][0]
    assert (top.id, top.metadata, top.modality) == ("a7", {"n": 7}, "text")
    assert top.score == pytest.approx(1.0, abs=0.05)

    # Add more, through open_or_create.
    index.close()
    index = open_or_create_index(directory, backend_config(backend), MODEL, DIM)
    more = unit_vectors(rng, 60)
    index.upsert_many([text_item(f"b{i}", v) for i, v in enumerate(more)])
    assert (len(index), index.vector_count()) == (181, 186)
    assert index.search_vectors(more[3], k=1)[0][0].id == "b3"

    # Upsert replaces every row of an asset: the clip becomes one text row.
    replacement = unit_vectors(rng, 1)[0]
    index.upsert_many(
        [(Asset(id="clip", text="now text"), [EmbeddedVector(modality="text", vector=replacement)])]
    )
    assert (len(index), index.vector_count()) == (181, 181)
    hit = index.search_vectors(replacement, k=1)[0][0]
    assert (hit.id, hit.modality, hit.best_timestamp) == ("clip", "text", None)
    assert index.get("clip").text == "now text"

    # Delete: gone from counts and from every search, even one aimed straight at them.
    deleted = [f"a{i}" for i in range(0, 120, 3)]
    assert index.delete([*deleted, "never-existed"]) == len(deleted)
    assert index.delete(deleted) == 0
    assert (len(index), index.vector_count()) == (141, 141)
    expected_ids = {f"a{i}" for i in range(120) if i % 3} | {f"b{i}" for i in range(60)}
    assert index.ids() == expected_ids | {"clip"}
    _assert_never_returned(index, first[::3], set(deleted))
    index.commit()
    index.close()

    with open_index(directory) as index:
        assert (len(index), index.vector_count()) == (141, 141)
        _assert_never_returned(index, first[::3], set(deleted))
        # Filters apply after reopening too.
        (hits,) = index.search_vectors(first[1], k=5, filter="n < 10")
        assert [h.id for h in hits][:1] == ["a1"]
        assert {h.id for h in hits} == {"a1", "a2", "a4", "a5", "a7"}

        index.record_failures([("x.jpg", "decode", "truncated"), ("y.mp4", "read", "missing")])
        index.record_failures([("x.jpg", "decode", "truncated")])
        assert [f["item"] for f in index.failures()] == ["x.jpg", "y.mp4"]
        index.clear_failure("x.jpg")
        assert [f["item"] for f in index.failures()] == ["y.mp4"]


@pytest.mark.parametrize("backend", ["flat", MILVUS])
def test_media_paths_survive_a_copied_index_and_another_working_directory(
    tmp_path, backend, monkeypatch
):
    """Media outside the index read back absolute; media inside it (rendered PDF pages)
    travel with the index folder."""
    rng = np.random.default_rng(11)
    work = tmp_path / "work"
    (work / "photos").mkdir(parents=True)
    monkeypatch.chdir(work)
    directory = Path("indexes") / "shop"  # relative, as typed on the command line
    index = new_backend_index(directory, backend)
    page = directory / "pages" / "key" / "1.png"
    page.parent.mkdir(parents=True)
    page.write_bytes(b"page one")
    frames = [Path("photos/f0.jpg"), directory / "pages" / "key" / "2.png"]
    vectors = unit_vectors(rng, 4)
    index.upsert_many(
        [
            (Asset(id="cat", image=Path("photos/cat.jpg")), [image_vector(vectors[0])]),
            (Asset(id="page", image=page, text="p. 1"), [image_vector(vectors[1])]),
            (Asset(id="clip", video=frames), [image_vector(v, "video") for v in vectors[2:]]),
        ]
    )
    index.commit()
    index.close()

    # Copied away (Milvus Lite keeps its folder locked until the process ends, so no
    # move), and the original pages deleted: the copy must not lean on them.
    moved = tmp_path / "elsewhere" / "shop"
    shutil.copytree(work / directory, moved)
    shutil.rmtree(work / directory / "pages")
    monkeypatch.chdir(tmp_path)
    with open_index(moved) as reopened:
        assets = reopened.get_many(["cat", "page", "clip"])
        assert reopened.get("page") == assets["page"]
    assert assets["cat"].image == work / "photos" / "cat.jpg"
    assert assets["page"].image == moved / "pages" / "key" / "1.png"
    assert assets["page"].image.read_bytes() == b"page one"
    assert assets["clip"].video == [work / "photos" / "f0.jpg", moved / "pages" / "key" / "2.png"]


def test_indexes_from_before_the_rule_keep_their_paths_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    index = new_backend_index(Path("old"), "flat")
    manifest = Path("old") / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"media_paths": "index_relative",', ""))
    index.close()
    with open_index(Path("old")) as old:
        vector = unit_vectors(np.random.default_rng(0), 1)[0]
        old.upsert_many([(Asset(id="cat", image=Path("photos/cat.jpg")), [image_vector(vector)])])
        assert old.get("cat").image == Path("photos/cat.jpg")


def image_vector(vector: np.ndarray, modality: str = "image") -> EmbeddedVector:
    timestamp = 0.0 if modality == "video" else None
    return EmbeddedVector(modality=modality, vector=vector, timestamp=timestamp)


def _assert_never_returned(index: SearchIndex, queries: np.ndarray, deleted: set[str]) -> None:
    for per_query in index.search_vectors(queries, k=50):
        assert len(per_query) == 50
        assert not deleted & {h.id for h in per_query}


@pytest.mark.parametrize("backend", ["flat", MILVUS])
def test_video_assets_score_as_their_best_frame(tmp_path, backend):
    rng = np.random.default_rng(8)
    frames = unit_vectors(rng, 5)
    texts = unit_vectors(rng, 30)
    with new_backend_index(tmp_path / backend, backend) as index:
        index.upsert_many([video_item("clip", frames)])
        index.upsert_many([text_item(f"t{i}", v) for i, v in enumerate(texts)])
        hits = index.search_vectors(frames[3], k=31)[0]
    assert len(hits) == len({h.id for h in hits}) == 31
    assert (hits[0].id, hits[0].modality, hits[0].best_timestamp) == ("clip", "video", 1.5)


@pytest.mark.parametrize("backend", ["flat", MILVUS])
def test_metadata_fields_follow_upserts_and_deletes(tmp_path, backend):
    """A field is there while one asset has a value for it (null is none): a nested object
    names its parents too, and a field goes with its last asset, also after reopening."""
    rng = np.random.default_rng(21)
    vectors = unit_vectors(rng, 8)
    clip = Asset(id="clip", video=Path("/videos/clip.mp4"), metadata={"fps": 2, "dims": {"w": 4}})
    frames = [
        EmbeddedVector(modality="video", vector=vector, timestamp=float(second))
        for second, vector in enumerate(vectors[5:])
    ]

    def present(index, *paths: str) -> set[str]:
        return {path for path in paths if index.has_metadata_field(path)}

    asked = ("color", "dims", "dims.w", "dims.h", "dim", "tags", "empty", "fps", "size", "none")
    with new_backend_index(tmp_path / backend, backend) as index:
        assert present(index, *asked) == set() and index.metadata_fields() == frozenset()
        index.upsert_many(
            [
                text_item("a", vectors[0], color="red", dims={"w": 3, "h": 4}, none=None),
                text_item("b", vectors[1], color="blue", tags=["x"], empty={}),
                text_item("c", vectors[2], fps=1),
                (clip, frames),
            ]
        )
        assert present(index, *asked) == set(asked) - {"dim", "size", "none"}
        assert index.metadata_fields() == {
            "color", "dims.w", "dims.h", "tags", "empty", "fps", "none",
        }  # fmt: skip
        assert len(index.metadata_fields(sample=1)) < len(index.metadata_fields())
        # Replacing the only asset with dims.h takes it away; dims.w stays with the clip.
        index.upsert_many([text_item("a", vectors[3], color="green", size=2)])
        assert present(index, "dims.h", "dims.w", "size") == {"dims.w", "size"}
        # A video of several rows counts once: c keeps fps; b's fields go with it.
        assert index.delete(["b", "clip"]) == 2
        assert present(index, *asked) == {"color", "size", "fps"}
        index.commit()
    with open_index(tmp_path / backend) as reopened:
        assert present(reopened, *asked) == {"color", "size", "fps"}
        assert reopened.metadata_fields() == {"color", "size", "fps"}


# -- filters -------------------------------------------------------------------------------

# Kinds of value that the filter semantics tell apart: ints, floats, booleans (not numbers),
# strings, null, missing keys and nested objects.
_COLORS = ["red", "blue", "green", "Red", ""]


def _metadata(i: int) -> dict[str, object]:
    metadata: dict[str, object] = {"color": _COLORS[i % 5], "price": (i * 7) % 100 + 0.5}
    if i % 4 == 0:
        metadata["n"] = i % 13
    elif i % 4 == 1:
        metadata["n"] = i % 2 == 0  # a boolean where other assets hold numbers
    elif i % 4 == 2:
        metadata["n"] = str(i % 13)
    if i % 3 == 0:
        metadata["flag"] = i % 2 == 0
    elif i % 3 == 1:
        metadata["flag"] = 1  # a number, never equal to true
    if i % 6 == 0:
        metadata["maybe"] = None
    elif i % 6 == 1:
        metadata["maybe"] = "x"
    if i % 2:
        metadata["dims"] = {"w": i % 7}
    return metadata


FILTERS = [
    "n > 5",
    "n == 1",
    "n != 1",
    "flag == true",
    "flag != true",
    "not (flag == false)",
    'not (color == "red")',
    'color in ["red", "blue"]',
    'color not in ["red", ""]',
    'color >= "b" and color < "h"',
    "10 <= price < 50 and flag == false",
    'dims.w >= 3 or color == "green"',
    "not (nope == 1)",
    "nope == 1 or n < 5",
    "maybe == null",
    "maybe != null or n == 0",
    "n in [1, 2, 3] and not (dims.w in [1, 2])",
]


@pytest.fixture(scope="module")
def filter_corpus() -> dict:
    rng = np.random.default_rng(17)
    basis = random_basis(rng, rank=8)
    n_assets = 300
    vectors = low_rank_unit_vectors(rng, n_assets, basis)
    metadata = [_metadata(i) for i in range(n_assets)]
    items = [
        (
            Asset(id=f"a{i}", text=f"text {i}", metadata=metadata[i]),
            [EmbeddedVector(modality="text", vector=vectors[i])],
        )
        for i in range(n_assets)
    ]
    return {
        "items": items,
        "vectors": vectors,
        "metadata": metadata,
        "queries": low_rank_unit_vectors(rng, 8, basis),
    }


@pytest.fixture(scope="module")
def filter_indexes(tmp_path_factory, filter_corpus) -> dict[str, SearchIndex]:
    """One index per backend over the filter corpus, shared by the filter tests."""
    root = tmp_path_factory.mktemp("filtered")
    indexes = {}
    for backend in BACKENDS:
        if backend == MILVUS and not _milvus_installed():
            continue
        index = new_backend_index(root / backend, backend)
        index.upsert_many(filter_corpus["items"])
        index.commit()
        indexes[backend] = index
    yield indexes
    for index in indexes.values():
        index.close()


def _milvus_installed() -> bool:
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError:
        return False
    return True


def _filtered_truth(corpus: dict, expression: str, k: int) -> list[list[tuple[str, float, int]]]:
    parsed = parse_filter(expression)
    keep = np.array([parsed.matches(m) for m in corpus["metadata"]])
    owners = np.array([f"a{i}" for i in range(len(keep))])
    if not keep.any():
        return [[] for _ in corpus["queries"]]
    return brute_force(corpus["queries"], corpus["vectors"][keep], owners[keep], k)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("expression", FILTERS)
def test_filtered_search_matches_brute_force_over_the_matching_assets(
    filter_indexes, filter_corpus, backend, expression
):
    if backend not in filter_indexes:
        pytest.skip("needs vlsearch[milvus]")
    k = 10
    hits = filter_indexes[backend].search_vectors(filter_corpus["queries"], k, filter=expression)
    truth = _filtered_truth(filter_corpus, expression, k)
    parsed = parse_filter(expression)
    for per_query, expected in zip(hits, truth, strict=True):
        assert len(per_query) == len(expected)  # k whenever k assets match
        assert all(parsed.matches(h.metadata) for h in per_query)
    found_ids = [[h.id for h in q] for q in hits]
    truth_ids = [[owner for owner, _, _ in q] for q in truth]
    if backend in ("flat", MILVUS):  # exact kinds: same ids and scores as brute force
        assert found_ids == truth_ids
        np.testing.assert_allclose(
            [[h.score for h in q] for q in hits],
            [[score for _, score, _ in q] for q in truth],
            rtol=1e-5,
            atol=1e-5,
        )
    elif any(truth_ids):
        assert recall(found_ids, truth_ids) >= 0.9


def test_filters_select_what_the_semantics_say(filter_indexes, filter_corpus):
    """Spot checks of the cases H5 asked to see on a real Milvus: missing keys, null, and
    booleans that are not numbers."""
    everything = len(filter_corpus["items"])
    query = filter_corpus["queries"][:1]
    for backend, index in filter_indexes.items():

        def ids(expression: str, index: SearchIndex = index) -> set[str]:
            return {h.id for h in index.search_vectors(query, everything, filter=expression)[0]}

        meta = filter_corpus["metadata"]
        with_true = {f"a{i}" for i, m in enumerate(meta) if m.get("flag") is True}
        assert ids("flag == true") == with_true, backend  # never the 1s
        ones = {f"a{i}" for i, m in enumerate(meta) if m.get("n") == 1 and m["n"] is not True}
        assert ids("n == 1") == ones, backend  # never the trues
        assert ids("not (nope == 1)") == set(), backend  # missing key: unknown, not false
        nulls = {f"a{i}" for i, m in enumerate(meta) if "maybe" in m and m["maybe"] is None}
        assert ids("maybe == null") == nulls, backend  # present and null; missing is not


@pytest.mark.parametrize("backend", ["flat", MILVUS])
def test_bad_filters_are_refused_with_the_reason(filter_indexes, filter_corpus, backend):
    if backend not in filter_indexes:
        pytest.skip("needs vlsearch[milvus]")
    with pytest.raises(ValueError, match="column"):
        filter_indexes[backend].search_vectors(filter_corpus["queries"], 3, filter="n = 1")


# -- Milvus specifics ---------------------------------------------------------------------


def test_milvus_ids_with_quotes_backslashes_and_newlines_round_trip(tmp_path):
    rng = np.random.default_rng(12)
    awkward = ['say "hi"', "back\\slash", "new\nline", "tab\tand ünïcode ✓", "it's"]
    with new_backend_index(tmp_path / "ids", MILVUS) as index:
        vectors = unit_vectors(rng, len(awkward))
        index.upsert_many([text_item(i, v) for i, v in zip(awkward, vectors, strict=True)])
        assert index.ids() == set(awkward)
        for asset_id, vector in zip(awkward, vectors, strict=True):
            assert asset_id in index
            assert index.get(asset_id).id == asset_id
            assert index.search_vectors(vector, k=1)[0][0].id == asset_id
        assert index.delete(awkward[:2]) == 2
        assert index.ids() == set(awkward[2:])


def test_milvus_partition_key_keeps_tenants_apart(tmp_path):
    rng = np.random.default_rng(13)
    vectors = unit_vectors(rng, 40)
    with new_backend_index(tmp_path / "tenants", MILVUS, partition_key="tenant") as index:
        index.upsert_many(
            [text_item(f"a{i}", v, tenant=f"t{i % 4}") for i, v in enumerate(vectors)]
        )
        for per_query in index.search_vectors(vectors[:5], k=10, filter='tenant == "t1"'):
            assert {h.metadata["tenant"] for h in per_query} == {"t1"}
            assert len(per_query) == 10
        (hits,) = index.search_vectors(vectors[1], k=3, filter='tenant == "t1" and n == 1')
        assert hits == []
        with pytest.raises(ValueError, match=r"'untenanted'.*partition_key"):
            index.upsert_many([text_item("untenanted", vectors[0])])
        assert "untenanted" not in index


# -- one FAISS distribution ----------------------------------------------------------------


def test_this_environment_has_one_faiss_distribution():
    from indexers.faiss_install import check_single_faiss, installed_faiss_distributions

    assert len(installed_faiss_distributions()) == 1
    check_single_faiss()


def test_two_faiss_distributions_are_refused_with_the_fix(monkeypatch):
    import importlib.metadata

    from indexers import faiss_install

    both = {"faiss": ["faiss-cpu", "faiss-gpu-cu12"], "numpy": ["numpy"]}
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: both)
    faiss_install.installed_faiss_distributions.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"faiss-cpu and faiss-gpu-cu12.*pip uninstall"):
            faiss_install.check_single_faiss()
    finally:
        faiss_install.installed_faiss_distributions.cache_clear()


@pytest.mark.slow
def test_milvus_hnsw_recall_with_and_without_a_filter(tmp_path, filter_corpus):
    pytest.importorskip("milvus_lite", reason="needs vlsearch[milvus]")
    config = config_for("hnsw", backend="milvus")
    with create_index(tmp_path / "hnsw", config, MODEL, DIM) as index:
        index.upsert_many(filter_corpus["items"])
        for expression in (None, "n > 5", 'color in ["red", "blue"]'):
            hits = index.search_vectors(filter_corpus["queries"], 10, filter=expression)
            if expression is None:
                owners = np.array([f"a{i}" for i in range(len(filter_corpus["vectors"]))])
                truth = brute_force(filter_corpus["queries"], filter_corpus["vectors"], owners, 10)
            else:
                truth = _filtered_truth(filter_corpus, expression, 10)
            found = [[h.id for h in q] for q in hits]
            assert recall(found, [[o for o, _, _ in q] for q in truth]) >= 0.9


def test_milvus_manifest_records_the_backend_but_never_the_token(tmp_path):
    config = backend_config(MILVUS, token="s3cret-token", collection="shop")
    create_index(tmp_path / "m", config, MODEL, DIM).close()
    written = (tmp_path / "m" / "manifest.json").read_text()
    assert '"backend": "milvus"' in written and '"collection": "shop"' in written
    assert "s3cret" not in written
    with open_index(tmp_path / "m") as index:
        assert index.manifest.index.milvus.collection == "shop"


@pytest.mark.parametrize("backend", ["flat", "hnsw", MILVUS])
def test_modalities_restrict_the_rows_searched(tmp_path, backend):
    """A recall channel over some modalities equals brute force over those rows only."""
    rng = np.random.default_rng(3)
    items, images = [], {}
    for i, (text_vector, image_vector) in enumerate(
        zip(*np.split(unit_vectors(rng, 80), 2), strict=True)
    ):
        vectors = [EmbeddedVector(modality="text", vector=text_vector)]
        image = None
        if i % 2:
            vectors.append(EmbeddedVector(modality="image", vector=image_vector))
            images[f"a{i}"], image = image_vector, Path(f"/images/a{i}.jpg")
        items.append((Asset(id=f"a{i}", text=f"t{i}", image=image), vectors))
    query = unit_vectors(rng, 1)
    with new_backend_index(tmp_path / backend, backend) as index:
        index.upsert_many(items)
        index.commit()
        hits = index.search_vectors(query, k=5, modalities={"image"})[0]
    expected = sorted(images, key=lambda a: -float(images[a] @ query[0]))[:5]
    assert [h.id for h in hits] == expected
    assert all(h.modality == "image" for h in hits)


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_batch_holds_the_same_hits_as_search_vectors(tmp_path, backend):
    """With a filter and a modality restriction: the batch's hits are search_vectors' hits,
    and its run has each query's ids and scores."""
    rng = np.random.default_rng(8)
    vectors = unit_vectors(rng, 60)
    items = [text_item(f"a{i}", v, n=i, tag=f"t{i % 3}") for i, v in enumerate(vectors)]
    items.append(video_item("clip", unit_vectors(rng, 4)))
    queries = unit_vectors(rng, 3)
    with new_backend_index(tmp_path / backend, backend) as index:
        index.upsert_many(items)
        index.commit()
        for search in (
            {"filter": "n >= 10 and tag != 't1'"},
            {"modalities": {"video"}},
            {"filter": "n < 30", "modalities": {"text", "image"}},
        ):
            batch = index.search_batch(queries, k=8, **search)
            hits = index.search_vectors(queries, k=8, **search)
            assert batch.to_hits() == hits and all(hits)
            run = batch.to_run(["q0", "q1", "q2"])
            assert run == {
                f"q{i}": {hit.id: pytest.approx(hit.score, abs=1e-6) for hit in query_hits}
                for i, query_hits in enumerate(hits)
            }
            assert [list(ids) for ids in run.values()] == [[h.id for h in q] for q in hits]


# -- hybrid: several channels fused -------------------------------------------------------


def _two_channel_items(rng: np.random.Generator, n: int = 60) -> list[tuple]:
    """Assets with a text, an image or both, so fusion has assets in one or two lists."""
    items = []
    for i, (text_vector, image_vector) in enumerate(
        zip(*np.split(unit_vectors(rng, 2 * n), 2), strict=True)
    ):
        vectors, image = [], None
        if i % 3 != 2:
            vectors.append(EmbeddedVector(modality="text", vector=text_vector))
        if i % 3 != 0:
            vectors.append(EmbeddedVector(modality="image", vector=image_vector))
            image = Path(f"/images/a{i}.jpg")
        text = f"t{i}" if i % 3 != 2 else None
        items.append((Asset(id=f"a{i}", text=text, image=image, metadata={"n": i}), vectors))
    return items


@pytest.mark.parametrize("backend", ["flat", MILVUS])
def test_hybrid_rrf_over_both_clip_channels_agrees_with_brute_force(tmp_path, backend):
    """FAISS fuses in Python, Milvus natively (fusion.native: auto): both equal RRF over
    brute-force channel lists, filtered or not."""
    from pipeline.fusion import ChannelHit, FusionConfig, RrfFuser
    from pipeline.schema import Query
    from pipeline.search import TwoStageSearch

    rng = np.random.default_rng(31)
    items = _two_channel_items(rng)
    query_vector = unit_vectors(rng, 1)[0]
    top_k = {"clip_image": 15, "clip_text": 20}
    config = validate_config(
        {
            **backend_config(backend).model_dump(),
            "recall": {"channels": list(top_k), "top_k": top_k},
            "rerank": {"enabled": False},
        }
    )  # fusion.native: auto, the default
    with new_backend_index(tmp_path / backend, backend) as index:
        index.upsert_many(items)
        search = TwoStageSearch(config, index, lambda _: query_vector, None, lambda: None)
        for expression in (None, "n < 40"):
            keep = parse_filter(expression) if expression else None
            lists = {}
            for channel, modality in (("clip_image", "image"), ("clip_text", "text")):
                scored = [
                    (a.id, float(v.vector @ query_vector))
                    for a, vectors in items
                    for v in vectors
                    if v.modality == modality and (keep is None or keep.matches(a.metadata))
                ]
                scored.sort(key=lambda pair: -pair[1])
                lists[channel] = [ChannelHit(id=i, score=s) for i, s in scored[: top_k[channel]]]
            expected = RrfFuser(FusionConfig()).fuse(lists, 25)
            results = search.run(Query(text="q"), top_k=25, filter=expression)
            assert [r.id for r in results] == [h.id for h in expected]
            np.testing.assert_allclose(
                [r.score for r in results], [h.score for h in expected], rtol=1e-6
            )
            # Milvus fused natively: it reports no per-channel ranks; FAISS does.
            assert all(bool(r.recall) == (backend != MILVUS) for r in results)
