"""Crashes, corrupt files and manifests: the store is the truth and nothing is lost."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import faiss
import numpy as np
import pytest

from indexers.index import (
    IncompatibleIndexError,
    Index,
    IndexExistsError,
    IndexNotFoundError,
)
from tests.index_support import DIM, MODEL, config_for, new_index, text_item, unit_vectors

REPO = Path(__file__).resolve().parents[1]


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return unit_vectors(np.random.default_rng(seed), n)


def _top_ids(index: Index, queries: np.ndarray) -> list[str]:
    return [hits[0].id for hits in index.search_vectors(queries, k=1)]


def _temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name)


# -- the FAISS file falls behind the store -----------------------------------------------


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf_flat"])
def test_rows_committed_to_the_store_but_not_to_faiss_survive(tmp_path, kind):
    vectors = _vectors(300)
    index = new_index(tmp_path / kind, kind)
    index.upsert_many([text_item(f"a{i}", v) for i, v in enumerate(vectors[:200])])
    index.commit()
    # Then a crash: these writes reach SQLite, the FAISS file is never saved again.
    index.upsert_many([text_item(f"a{i}", v) for i, v in enumerate(vectors[200:], 200)])
    index.delete([f"a{i}" for i in range(20)])
    index.close()

    index = Index.open(tmp_path / kind)
    assert (len(index), index.vector_count()) == (280, 280)
    assert _top_ids(index, vectors[200:]) == [f"a{i}" for i in range(200, 300)]
    for hits in index.search_vectors(vectors[:20], k=30):
        assert not {h.id for h in hits} & {f"a{i}" for i in range(20)}
    assert index.faiss.live_count == 280  # each row exactly once
    index.commit()
    index.close()

    with Index.open(tmp_path / kind) as index:
        assert index.faiss.live_count == 280
        assert _top_ids(index, vectors[20:]) == [f"a{i}" for i in range(20, 300)]


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from pathlib import Path
    from indexers.index import Index
    from tests.index_support import DIM, MODEL, config_for, text_item, unit_vectors

    index = Index.create(Path(sys.argv[1]), config_for("flat"), MODEL, DIM)
    for batch in range(10_000):
        vectors = unit_vectors(np.random.default_rng(batch), 3)
        index.upsert_many([text_item(f"a{batch}-{i}", v) for i, v in enumerate(vectors)])
        if batch % 2:
            index.commit()
        print(batch, flush=True)
    """
)


def test_a_writer_killed_at_any_instant_leaves_whole_batches(tmp_path):
    directory = tmp_path / "killed"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(directory)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    for line in writer.stdout:
        if int(line) >= 40:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait()

    with Index.open(directory, model_id=MODEL) as index:
        batches = len(index) // 3
        assert len(index) == 3 * batches and batches > 40
        assert index.vector_count() == len(index)
        for batch in range(batches):
            vectors = unit_vectors(np.random.default_rng(batch), 3)
            assert _top_ids(index, vectors) == [f"a{batch}-{i}" for i in range(3)]
        assert index.faiss.live_count == len(index)
    assert _temp_files(directory) == []


# -- a damaged FAISS file is rebuilt from the store ----------------------------------------


def _damage(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(os.urandom(path.stat().st_size))
    elif how == "wrong_dim":
        faiss.write_index(faiss.IndexIDMap2(faiss.IndexFlatIP(DIM + 1)), str(path))


@pytest.mark.parametrize("how", ["missing", "empty", "truncated", "garbage", "wrong_dim"])
@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_damaged_faiss_file_is_rebuilt(tmp_path, caplog, kind, how):
    vectors = _vectors(150, seed=1)
    directory = tmp_path / kind
    with new_index(directory, kind) as index:
        index.upsert_many([text_item(f"a{i}", v) for i, v in enumerate(vectors)])
    _damage(directory / "vectors.faiss", how)

    with caplog.at_level(logging.INFO, logger="indexers"), Index.open(directory) as index:
        assert _top_ids(index, vectors) == [f"a{i}" for i in range(150)]
    assert "vectors.faiss" in caplog.text and "rebuilding" in caplog.text
    assert faiss.read_index(str(directory / "vectors.faiss")).ntotal == 150


# -- atomic writes -------------------------------------------------------------------------


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    vectors = _vectors(60, seed=2)
    directory = tmp_path / "atomic"
    index = new_index(directory, "flat")
    index.upsert_many([text_item(f"a{i}", v) for i, v in enumerate(vectors[:30])])
    index.commit()
    saved = (directory / "vectors.faiss").read_bytes()
    manifest = (directory / "manifest.json").read_bytes()

    def disk_full(faiss_index: faiss.Index, path: str) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(faiss, "write_index", disk_full)
    index.upsert_many([text_item(f"a{i}", v) for i, v in enumerate(vectors[30:], 30)])
    with pytest.raises(OSError, match="No space"):
        index.commit()
    assert (directory / "vectors.faiss").read_bytes() == saved
    assert (directory / "manifest.json").read_bytes() == manifest
    assert _temp_files(directory) == []

    monkeypatch.undo()
    index.commit()
    index.close()
    assert faiss.read_index(str(directory / "vectors.faiss")).ntotal == 60
    assert _temp_files(directory) == []


def test_temp_files_of_killed_writers_are_cleaned_on_open(tmp_path):
    directory = tmp_path / "stale"
    with new_index(directory, "flat") as index:
        index.upsert_many([text_item("a", _vectors(1)[0])])
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    stale = directory / f".vectors.faiss.tmp-{int(gone.stdout)}-0badc0de"
    stale.write_bytes(b"half a file")
    Index.open(directory).close()
    assert not stale.exists()


# -- manifest --------------------------------------------------------------------------------


def test_manifest_records_model_kind_fingerprint_and_library_versions(tmp_path):
    config = config_for("hnsw")
    with Index.create(tmp_path / "m", config, MODEL, DIM) as index:
        index.upsert_many([text_item("a", _vectors(1)[0])])
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert (manifest["model_id"], manifest["dim"]) == (MODEL, DIM)
    assert manifest["index"]["kind"] == "hnsw" and manifest["index"]["hnsw"]["m"] == 16
    assert manifest["embedder"] == config.embedder.model_dump(mode="json")
    assert manifest["config_fingerprint"] == config.fingerprint()
    assert manifest["versions"]["faiss"] == faiss.__version__
    assert manifest["versions"]["numpy"] == np.__version__
    assert set(manifest["versions"]) == {"vlsearch", "faiss", "torch", "open_clip", "numpy"}
    assert manifest["created_at"].endswith("Z") and manifest["updated_at"] >= manifest["created_at"]


def test_opening_with_another_model_names_both(tmp_path, tiny_embedder):
    with new_index(tmp_path / "m", "flat"):
        pass
    with pytest.raises(IncompatibleIndexError) as error:
        Index.open(tmp_path / "m", model_id="other-model")
    assert MODEL in str(error.value) and "other-model" in str(error.value)
    with pytest.raises(IncompatibleIndexError) as error:
        Index.open(tmp_path / "m", embedder=tiny_embedder)
    assert MODEL in str(error.value) and tiny_embedder.model_id in str(error.value)
    with pytest.raises(IncompatibleIndexError, match="other-model"):
        Index.open_or_create(tmp_path / "m", config_for("flat"), "other-model", DIM)


def test_opening_with_another_dim_is_refused(tmp_path, tiny_embedder):
    model = tiny_embedder.model_id
    Index.create(tmp_path / "d", config_for("flat"), model, tiny_embedder.dim + 1).close()
    with pytest.raises(IncompatibleIndexError, match=f"{tiny_embedder.dim + 1}-dim"):
        Index.open(tmp_path / "d", embedder=tiny_embedder)
    with pytest.raises(IncompatibleIndexError, match="dim"):
        Index.open_or_create(tmp_path / "d", config_for("flat"), model, tiny_embedder.dim)


def test_not_an_index_and_newer_formats_are_clear_errors(tmp_path):
    with pytest.raises(IndexNotFoundError, match="not a vlsearch index"):
        Index.open(tmp_path)
    Index.create(tmp_path / "f", config_for("flat"), MODEL, DIM).close()
    path = tmp_path / "f" / "manifest.json"
    path.write_text(path.read_text().replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(IncompatibleIndexError, match="upgrade vlsearch"):
        Index.open(tmp_path / "f")
    path.write_text("{not json")
    with pytest.raises(IndexNotFoundError, match="unreadable manifest"):
        Index.open(tmp_path / "f")


def test_create_refuses_a_non_empty_index_but_replaces_an_empty_one(tmp_path):
    Index.create(tmp_path / "c", config_for("flat"), MODEL, DIM).close()
    with Index.create(tmp_path / "c", config_for("hnsw"), MODEL, DIM) as index:
        assert index.manifest.index.kind == "hnsw"
        index.upsert_many([text_item("a", _vectors(1)[0])])
    with pytest.raises(IndexExistsError, match="already holds an index with 1 assets"):
        Index.create(tmp_path / "c", config_for("flat"), MODEL, DIM)
    with Index.open_or_create(tmp_path / "c", config_for("flat"), MODEL, DIM) as index:
        assert len(index) == 1 and index.manifest.index.kind == "hnsw"
