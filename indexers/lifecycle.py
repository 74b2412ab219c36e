"""What every index backend does the same way when it is opened and closed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from pipeline.settings import IndexConfig

if TYPE_CHECKING:
    from indexers.store import MetadataStore

logger = logging.getLogger(__name__)

_Index = TypeVar("_Index", bound="CommitOnExit")


class FailureLog:
    """Build failures, kept in a SQLite store: the FAISS index's own store, or a small
    one beside a Milvus collection. Subclasses set ``_lock`` and ``_failure_store``."""

    _lock: threading.RLock
    _failure_store: MetadataStore

    def record_failures(self, failures: Sequence[tuple[str, str, str]]) -> None:
        """Record (item, stage, reason) triples; recording one again replaces it."""
        if failures:
            with self._lock:
                self._failure_store.record_failures(failures)

    def failures(self) -> list[dict[str, str]]:
        with self._lock:
            return self._failure_store.failures()

    def clear_failure(self, item: str) -> None:
        with self._lock:
            self._failure_store.clear_failure(item)


class CommitOnExit:
    """As a context manager an index commits on a clean exit and always closes."""

    def commit(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Index) -> _Index:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self.close()


def warn_if_settings_differ(directory: Path, built: IndexConfig, wanted: IndexConfig) -> None:
    """An existing index keeps the settings it was built with; say so when a config asks
    for others. ``model_dump`` leaves secrets (the Milvus token) out of the comparison."""
    if built.model_dump() != wanted.model_dump():
        logger.warning(
            "%s keeps the index settings it was built with (%s), not the config's; "
            "rebuild the index to change them",
            directory,
            built.model_dump(),
        )
