"""BM25 recall with bm25s.

bm25s builds an immutable index, so the channel keeps every document's text and tokens
and rebuilds the index from the cached tokens at the first search or save after a write.
That rebuild is linear in the corpus (about 0.3 s per 5,000 MS MARCO passages on one
core; tokenising, paid once per added document, costs as much again), which suits
knowledge bases up to a few hundred thousand passages; batch writes between searches.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from typing_extensions import Self

from indexers.text_channels.base import (
    ChannelHit,
    TextChannelError,
    checked_documents,
    checked_queries,
)
from indexers.text_channels.config import Bm25ChannelConfig
from indexers.text_channels.storage import ChannelManifest, current_version, save_version

logger = logging.getLogger(__name__)

_CORPUS_FILE = "corpus.jsonl"
_INDEX_FOLDER = "bm25s"


class Bm25Channel:
    name = "bm25"

    def __init__(self, config: Bm25ChannelConfig | None = None) -> None:
        self.config = config or Bm25ChannelConfig()
        self._bm25s = _import_bm25s()
        self._stemmer = _make_stemmer(self.config.stemmer)
        self._check_stopwords()
        self._lock = threading.RLock()
        self._texts: dict[str, str] = {}
        # Tokens per document; None after a load until the first write needs them.
        self._tokens: dict[str, list[str]] | None = {}
        self._retriever: Any = None
        self._retriever_ids: list[str] = []
        self._stale = False

    # -- writing -------------------------------------------------------------------------

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        documents = checked_documents(ids, texts)
        if not documents:
            return
        with self._lock:  # PyStemmer stemmers are not thread-safe: tokenise under the lock
            tokens = self._tokenize(list(documents.values()))
            corpus_tokens = self._corpus_tokens()
            self._texts.update(documents)
            corpus_tokens.update(zip(documents, tokens, strict=True))
            self._stale = True

    def delete(self, ids: Sequence[str]) -> int:
        with self._lock:
            present = [doc_id for doc_id in dict.fromkeys(ids) if doc_id in self._texts]
            if present:
                corpus_tokens = self._corpus_tokens()
                for doc_id in present:
                    del self._texts[doc_id]
                    del corpus_tokens[doc_id]
                self._stale = True
            return len(present)

    # -- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._texts)

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._texts)

    def search(self, queries: Sequence[str], k: int) -> list[list[ChannelHit]]:
        """Documents sharing no term with a query score 0 and are never returned, so a
        query may get fewer than ``k`` hits (none if all its words are stop words)."""
        queries = checked_queries(queries, k)
        if not queries:
            return []
        with self._lock:
            query_tokens = self._tokenize(queries)
            self._refresh()
            if not self._retriever_ids:
                return [[] for _ in queries]
            indices, scores = self._retriever.retrieve(
                query_tokens,
                k=min(k, len(self._retriever_ids)),
                show_progress=False,
                n_threads=1,
            )
            ids = self._retriever_ids
        return [
            [
                ChannelHit(ids[i], s)
                for i, s in zip(row.tolist(), row_scores.tolist(), strict=True)
                if s > 0
            ]
            for row, row_scores in zip(indices, scores, strict=True)
        ]

    # -- persistence ---------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        with self._lock:
            self._refresh()
            manifest = ChannelManifest(
                backend=self.name, documents=len(self._texts), config=self.config.model_dump()
            )
            save_version(directory, manifest, self._write_files)

    @classmethod
    def load(cls, directory: Path, config: Bm25ChannelConfig | None = None) -> Self:
        """Open a saved channel. Settings other than the saved ones re-index the saved
        texts (in memory; the next ``save`` keeps the result)."""
        config = config or Bm25ChannelConfig()
        version, manifest = current_version(directory)
        channel = cls(config)
        texts = _read_corpus(version / _CORPUS_FILE)
        if manifest.config != config.model_dump():
            logger.info("%s: BM25 settings changed; re-indexing %d texts", directory, len(texts))
            channel.add(list(texts), list(texts.values()))
            return channel
        channel._texts = texts
        channel._tokens = None
        if texts:
            channel._retriever = channel._bm25s.BM25.load(
                str(version / _INDEX_FOLDER), show_progress=False
            )
        channel._retriever_ids = list(texts)
        return channel

    # -- internals -----------------------------------------------------------------------

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        return self._bm25s.tokenize(
            texts,
            lower=self.config.lower,
            stopwords=self.config.stopwords,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )

    def _corpus_tokens(self) -> dict[str, list[str]]:
        if self._tokens is None:
            texts = list(self._texts.values())
            self._tokens = dict(zip(self._texts, self._tokenize(texts), strict=True))
        return self._tokens

    def _refresh(self) -> None:
        """Rebuild the bm25s index if documents changed since it was built."""
        if not self._stale:
            return
        self._retriever_ids = list(self._texts)
        self._retriever = None
        if self._retriever_ids:
            corpus_tokens = self._corpus_tokens()
            retriever = self._bm25s.BM25(
                k1=self.config.k1,
                b=self.config.b,
                delta=self.config.delta,
                method=self.config.method,
            )
            retriever.index([corpus_tokens[i] for i in self._retriever_ids], show_progress=False)
            self._retriever = retriever
        self._stale = False

    def _write_files(self, version: Path) -> None:
        with (version / _CORPUS_FILE).open("w", encoding="utf-8") as handle:
            for doc_id, text in self._texts.items():
                handle.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
        if self._retriever is not None:
            self._retriever.save(str(version / _INDEX_FOLDER), show_progress=False)

    def _check_stopwords(self) -> None:
        try:
            self._tokenize(["probe"])
        except ValueError as exc:
            raise TextChannelError(f"bm25.stopwords {self.config.stopwords!r}: {exc}") from None


def _read_corpus(path: Path) -> dict[str, str]:
    texts: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts[row["id"]] = row["text"]
    return texts


def _import_bm25s() -> Any:
    try:
        import bm25s
    except ImportError as exc:
        raise TextChannelError(
            "the bm25 text channel needs bm25s; install it with pip install 'vlsearch[text]'"
        ) from exc
    # bm25s sets its logger to DEBUG at import; let the application's logging config decide.
    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s


def _make_stemmer(language: str | None) -> Any:
    if language is None:
        return None
    try:
        import Stemmer
    except ImportError as exc:
        raise TextChannelError(
            f"bm25.stemmer {language!r} needs PyStemmer; install it with pip install "
            "'vlsearch[text]', or set bm25.stemmer to null"
        ) from exc
    try:
        return Stemmer.Stemmer(language)
    except KeyError:
        known = ", ".join(Stemmer.algorithms())
        raise TextChannelError(
            f"bm25.stemmer {language!r} is unknown; choose one of {known}"
        ) from None


__all__ = ["Bm25Channel"]
