"""Offline index builds: reader -> decoder (parallel workers) -> embedder -> writer.

Crash safety comes from the writer: each chunk of assets lands in one SQLite
transaction (see ``indexers.index``), so a build killed at any instant holds
whole assets or nothing, and ``resume`` skips exactly the ids already stored.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel

from indexers.backends import NativeFusionIndex, SearchIndex, create_index, open_or_create_index
from indexers.channel_set import ChannelSet
from indexers.embedders import Embedder
from indexers.index import EmbeddedVector
from indexers.sources import SourceProblem, iter_source_counted
from indexers.store import asset_storage_problem
from indexers.text_channels import create_text_channel
from pipeline.config import Config
from pipeline.schema import Asset

logger = logging.getLogger(__name__)

BuildMode = Literal["create", "resume", "upsert"]
ProgressCallback = Callable[[int], None]


class StageTimings(BaseModel):
    """Seconds per stage. ``decode_s`` is summed over workers (it runs in
    parallel); ``decode_wait_s`` is how long the embedder sat waiting for it."""

    read_s: float = 0.0
    decode_s: float = 0.0
    decode_wait_s: float = 0.0
    embed_s: float = 0.0
    write_s: float = 0.0
    total_s: float = 0.0


class BuildReport(BaseModel):
    input: str
    mode: BuildMode
    indexed: int = 0
    failed: int = 0
    skipped: int = 0
    already_indexed: int = 0
    vectors: int = 0
    items_per_s: float = 0.0
    timings: StageTimings = StageTimings()

    @property
    def ok(self) -> bool:
        return self.failed == 0


@dataclass
class Decoded:
    """An asset with its pixels preprocessed for the embedder."""

    asset: Asset
    image: torch.Tensor | None = None
    frames: list[tuple[float, torch.Tensor]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def tensor_count(self) -> int:
        return (self.image is not None) + len(self.frames)


@dataclass
class DecodeFailure:
    item: str
    reason: str
    seconds: float


def build_index(
    config: Config,
    embedder: Embedder,
    source: Path,
    out: Path,
    mode: BuildMode = "create",
    progress: ProgressCallback | None = None,
) -> BuildReport:
    """Index every item of ``source`` into ``out``; see ``BuildMode``:
    ``create`` needs an empty ``out``, ``resume`` skips ids already stored,
    ``upsert`` re-embeds and replaces them. ``progress`` advances by input files
    (or manifest rows), as ``count_source`` counts them. The configured text channels
    are filled beside the store and saved after it."""
    started = time.perf_counter()
    report = BuildReport(input=str(source), mode=mode)
    index = _open_for(mode, config, embedder, out)
    try:
        channels = open_channels(index, out, config)
        done = index.ids() if mode == "resume" else set()
        stages = _Stages(config, embedder, index, channels, out, report)
        stages.run(source, done, progress or (lambda _: None))
        commit_started = time.perf_counter()
        index.commit()
        channels.save()
        report.timings.write_s += time.perf_counter() - commit_started
        _write_outputs(index, out, report, started)
    finally:
        index.close()
    return report


@dataclass(frozen=True)
class ItemFailure:
    """An item of an upsert that was not stored, and why."""

    item: str
    stage: str
    reason: str


def upsert_assets(
    config: Config,
    embedder: Embedder,
    index: SearchIndex,
    channels: ChannelSet,
    assets: Iterable[Asset],
) -> tuple[BuildReport, list[ItemFailure]]:
    """Embed and upsert ``assets`` into an index (and its text channels) that the caller
    holds open, committed before returning: a server's writes, which must reach the
    instance it searches. Items that cannot be decoded or stored are returned with their
    reasons (and logged in the index's errors); the others are stored."""
    started = time.perf_counter()
    report = BuildReport(input="<api>", mode="upsert")
    failures: list[ItemFailure] = []
    stages = _Stages(config, embedder, index, channels, Path(), report, failures.append)
    stages.write(stages.checked(iter(assets)), lambda _: None)
    index.commit()
    channels.save()
    report.timings.total_s = time.perf_counter() - started
    return report, failures


def _open_for(mode: BuildMode, config: Config, embedder: Embedder, out: Path) -> SearchIndex:
    extra = _index_vector_fields(config, out)
    if mode == "create":
        return create_index(out, config, embedder.model_id, embedder.dim, extra)
    return open_or_create_index(out, config, embedder.model_id, embedder.dim, extra)


def _index_vector_fields(config: Config, out: Path) -> dict[str, int]:
    """The text channels a Milvus index also holds as vector fields (``text_dense``), so
    Milvus can fuse them natively; FAISS keeps them beside the index only."""
    if config.index.backend != "milvus" or not config.text_channels:
        return {}
    channels = [create_text_channel(channel) for channel in config.text_channels]
    return ChannelSet(out, channels).vector_dims()


def open_channels(index: SearchIndex, index_dir: Path, config: Config) -> ChannelSet:
    """The index's configured text channels, caught up with its store (a build or a
    delete killed after the store committed left them behind)."""
    channels = ChannelSet.open(index_dir, config.text_channels)
    catch_up_channels(channels, index)
    return channels


def catch_up_channels(channels: ChannelSet, index: SearchIndex) -> None:
    """Bring the channels in step with the store (reads every stored id: do it before
    writing, not on every search)."""
    if len(channels):
        channels.reconcile(index.ids(), lambda asset_id: _stored_text(index, asset_id))


def _stored_text(index: SearchIndex, asset_id: str) -> str | None:
    asset = index.get(asset_id)
    return asset.text if asset is not None else None


@dataclass
class _Stages:
    config: Config
    embedder: Embedder
    index: SearchIndex
    channels: ChannelSet
    out: Path
    report: BuildReport
    on_failure: Callable[[ItemFailure], None] = lambda _: None
    # How many input files each asset in flight completes (see iter_source_counted).
    _counts: dict[str, int] = field(default_factory=dict)

    def run(self, source: Path, done: set[str], progress: ProgressCallback) -> None:
        self.write(self._read(source, done, progress), progress)

    def write(self, assets: Iterable[Asset], progress: ProgressCallback) -> None:
        config, timings, report = self.config, self.report.timings, self.report
        decoded = _decode_in_order(assets, config, self.embedder, timings)
        for chunk, failures in _chunks(decoded, config, timings):
            embed_started = time.perf_counter()
            items = _embed_chunk(self.embedder, chunk, config.embedder.batch_size)
            timings.embed_s += time.perf_counter() - embed_started
            write_started = time.perf_counter()
            self._write(items)
            self._fail([(f.item, "decode", f.reason) for f in failures])
            for asset, _ in items:
                self.index.clear_failure(asset.id)
            timings.write_s += time.perf_counter() - write_started
            report.indexed += len(items)
            report.vectors += sum(len(vectors) for _, vectors in items)
            report.failed += len(failures)
            finished = [asset.id for asset, _ in items] + [f.item for f in failures]
            progress(sum(self._counts.pop(item_id, 0) for item_id in finished))

    def _write(self, items: list[tuple[Asset, list[EmbeddedVector]]]) -> None:
        """Store a chunk; an index with vector fields for text channels gets their vectors
        (encoded once, by the channel) with the assets."""
        fields = self.index.native_channels if isinstance(self.index, NativeFusionIndex) else ()
        shared = [name for name in self.channels.names if name in fields]
        if not shared:
            self.index.upsert_many(items)
            self.channels.add(asset for asset, _ in items)
            return
        self.channels.add(asset for asset, _ in items)
        ids = [asset.id for asset, _ in items]
        extra = {name: self.channels.vectors_of(name, ids) for name in shared}
        self.index.upsert_many(items, extra_vectors=extra)  # type: ignore[call-arg]

    def _fail(self, failures: list[tuple[str, str, str]]) -> None:
        self.index.record_failures(failures)
        for item, stage, reason in failures:
            self.on_failure(ItemFailure(item, stage, reason))

    def checked(self, assets: Iterator[Asset]) -> Iterator[Asset]:
        """The assets that can be stored; the others fail (read stage) with the reason."""
        return (asset for asset in assets if self._storable(asset))

    def _storable(self, asset: Asset) -> bool:
        """Whether the store can hold the asset; if not, it fails with the reason."""
        if problem := asset_storage_problem(asset):
            self._fail([(asset.id, "read", f"cannot be stored: {problem}")])
            self.report.failed += 1
            return False
        return True

    def _read(self, source: Path, done: set[str], progress: ProgressCallback) -> Iterator[Asset]:
        report = self.report
        items = iter_source_counted(source, self.config.documents, self.out / "pages")
        while True:
            started = time.perf_counter()
            next_item = next(items, None)
            report.timings.read_s += time.perf_counter() - started
            if next_item is None:
                return
            item, count = next_item
            if isinstance(item, SourceProblem):
                self._fail([(item.item, "read", item.reason)])
                setattr(report, item.outcome, getattr(report, item.outcome) + 1)
                progress(count)
            elif item.id in done:
                report.already_indexed += 1
                progress(count)
            elif not self._storable(item):
                progress(count)
            else:
                self._counts[item.id] = self._counts.get(item.id, 0) + count
                yield item


def _decode_in_order(
    assets: Iterable[Asset], config: Config, embedder: Embedder, timings: StageTimings
) -> Iterator[Decoded | DecodeFailure]:
    """Decode in worker threads, a bounded window ahead, yielding in input order
    so the embedder always has work queued while files are read."""
    transform = embedder.image_transform

    def decode(asset: Asset) -> Decoded | DecodeFailure:
        return decode_asset(asset, config, transform)

    if config.build.workers == 0:
        for asset in assets:
            result = decode(asset)
            timings.decode_s += result.seconds
            yield result
        return
    window = max(8, config.build.workers * 8)
    with ThreadPoolExecutor(config.build.workers, thread_name_prefix="decode") as pool:
        pending: deque[Future[Decoded | DecodeFailure]] = deque()
        for asset in assets:
            pending.append(pool.submit(decode, asset))
            if len(pending) >= window:
                yield _collect(pending.popleft(), timings)
        while pending:
            yield _collect(pending.popleft(), timings)


def _collect(
    future: Future[Decoded | DecodeFailure], timings: StageTimings
) -> Decoded | DecodeFailure:
    waited = time.perf_counter()
    result = future.result()
    timings.decode_wait_s += time.perf_counter() - waited
    timings.decode_s += result.seconds
    return result


def decode_asset(
    asset: Asset, config: Config, transform: Callable[..., torch.Tensor]
) -> Decoded | DecodeFailure:
    """Load and preprocess one asset's image and video frames; never raises for bad media."""
    from pipeline.media import MediaError
    from pipeline.media_inputs import content_frames, content_image

    started = time.perf_counter()
    try:
        decoded = Decoded(asset=asset)
        if asset.image is not None:
            decoded.image = transform(content_image(asset, config.media))
        if asset.video is not None:
            frames = content_frames(asset, config.media)
            decoded.frames = [(frame.timestamp, transform(frame.image)) for frame in frames]
    except MediaError as exc:
        return DecodeFailure(asset.id, exc.reason, time.perf_counter() - started)
    except (OSError, ValueError) as exc:
        return DecodeFailure(
            asset.id, str(exc) or type(exc).__name__, time.perf_counter() - started
        )
    decoded.seconds = time.perf_counter() - started
    return decoded


def _chunks(
    decoded: Iterable[Decoded | DecodeFailure], config: Config, timings: StageTimings
) -> Iterator[tuple[list[Decoded], list[DecodeFailure]]]:
    """Groups decoded assets into checkpoint-sized chunks, bounded by pixel
    tensors too so a folder of long videos cannot exhaust memory."""
    tensor_budget = max(4 * config.embedder.batch_size, 64)
    chunk: list[Decoded] = []
    failures: list[DecodeFailure] = []
    tensors = 0
    for item in decoded:
        if isinstance(item, DecodeFailure):
            failures.append(item)
        else:
            chunk.append(item)
            tensors += item.tensor_count
        if len(chunk) + len(failures) >= config.build.checkpoint_every or tensors >= tensor_budget:
            yield chunk, failures
            chunk, failures, tensors = [], [], 0
    if chunk or failures:
        yield chunk, failures


def _embed_chunk(
    embedder: Embedder, chunk: list[Decoded], batch_size: int
) -> list[tuple[Asset, list[EmbeddedVector]]]:
    pixels = [t for d in chunk for t in ([d.image] if d.image is not None else [])]
    pixels += [tensor for d in chunk for _, tensor in d.frames]
    pixel_vectors = _embed_tensors(embedder, pixels, batch_size)
    texts = [d.asset.text for d in chunk if d.asset.text is not None]
    text_vectors = iter(embedder.embed_texts(texts)) if texts else iter(())
    image_vectors = iter(pixel_vectors[: sum(d.image is not None for d in chunk)])
    frame_vectors = iter(pixel_vectors[sum(d.image is not None for d in chunk) :])
    items = []
    for d in chunk:
        vectors: list[EmbeddedVector] = []
        if d.asset.text is not None:
            vectors.append(EmbeddedVector(modality="text", vector=next(text_vectors)))
        if d.image is not None:
            vectors.append(EmbeddedVector(modality="image", vector=next(image_vectors)))
        vectors += [
            EmbeddedVector(modality="video", vector=next(frame_vectors), timestamp=ts)
            for ts, _ in d.frames
        ]
        items.append((d.asset, vectors))
    return items


def _embed_tensors(embedder: Embedder, tensors: list[torch.Tensor], size: int) -> np.ndarray:
    if not tensors:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    parts = [
        embedder.embed_image_tensors(torch.stack(tensors[i : i + size]))
        for i in range(0, len(tensors), size)
    ]
    return np.concatenate(parts)


def _write_outputs(index: SearchIndex, out: Path, report: BuildReport, started: float) -> None:
    report.timings.total_s = time.perf_counter() - started
    processed = report.indexed + report.failed + report.skipped
    report.items_per_s = processed / report.timings.total_s if report.timings.total_s else 0.0
    errors = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in index.failures())
    _atomic_write(out / "errors.jsonl", errors)
    _atomic_write(out / "build_report.json", report.model_dump_json(indent=2) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
