"""Bounded concurrency with a bounded queue for one model stage (embed or rerank).

Model work runs in the stage's own threads, never on the event loop, so the server keeps
answering (health checks, refusals) while models compute. A request that finds
``max_concurrency + max_queue`` requests already in the stage is refused at once
(:class:`Saturated`, a 503 with Retry-After) instead of waiting without end; one that has
not finished after the timeout gets :class:`StageTimeout` (504). A job that timed out
still holds its slot until its thread finishes: the bound counts real work, so a storm of
timeouts cannot pile unbounded work onto the model.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Saturated(Exception):
    """The stage is full: the client should retry after ``retry_after_s``."""

    def __init__(self, stage: str, retry_after_s: int) -> None:
        self.stage = stage
        self.retry_after_s = retry_after_s
        super().__init__(f"the {stage} stage is at capacity; retry in {retry_after_s} s")


class StageTimeout(Exception):
    def __init__(self, stage: str, timeout_s: float) -> None:
        self.stage = stage
        super().__init__(
            f"the {stage} stage did not finish within serve.request_timeout_s = {timeout_s} s"
        )


class StageGate:
    def __init__(self, name: str, max_concurrency: int, max_queue: int, retry_after_s: int) -> None:
        self.name = name
        self.capacity = max_concurrency + max_queue
        self.retry_after_s = retry_after_s
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix=f"stage-{name}")
        self._lock = threading.Lock()
        self._in_stage = 0  # queued + running
        self._running = 0

    @property
    def in_stage(self) -> int:
        return self._in_stage

    @property
    def queued(self) -> int:
        return self._in_stage - self._running

    async def run(self, work: Callable[[], T], timeout_s: float | None) -> T:
        """``work()`` in the stage's threads; Saturated at once when full, StageTimeout
        after ``timeout_s`` (none: no deadline; a job still queued then is dropped unstarted)."""
        future = self._submit(work)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except TimeoutError:
            future.cancel()
            raise StageTimeout(self.name, timeout_s) from None

    def _submit(self, work: Callable[[], T]) -> Future[T]:
        with self._lock:
            if self._in_stage >= self.capacity:
                raise Saturated(self.name, self.retry_after_s)
            self._in_stage += 1

        def tracked() -> T:
            with self._lock:
                self._running += 1
            try:
                return work()
            finally:
                with self._lock:
                    self._running -= 1

        future = self._pool.submit(tracked)
        future.add_done_callback(self._leave)
        return future

    def _leave(self, _future: Future[T]) -> None:
        with self._lock:
            self._in_stage -= 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
