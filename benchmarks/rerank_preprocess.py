"""Reranker input preparation on a cold request: a request's document photos decoded,
resized and patchified (and the prompts tokenised) on 1 thread against N, one run.

On a GPU server this CPU work, not the model, bounds a request whose candidates were not
seen before, so vlsearch prepares a request's distinct images and videos on a thread pool
(``preprocess_workers``). Each setting gets a fresh reranker (empty caches) per round;
settings alternate over rounds and the best round counts. Real photos (Flickr8k, JPEG);
the tiny random model only supplies the processor and tokenizer, no forward pass is timed.

    PYTHONPATH=. python benchmarks/rerank_preprocess.py --data ../shared/data/flickr8k-1k/images
    PYTHONPATH=. python benchmarks/rerank_preprocess.py --data ../shared/data/flickr8k-1k/images \
        --upscale 6
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from pipeline.schema import Content
from rerankers.qwen3_vl.config import Qwen3VLRerankerConfig
from rerankers.qwen3_vl.reranker import Qwen3VLRerankerBackend
from rerankers.qwen3_vl.tiny import build_tiny_qwen3_vl_reranker


def prepare_seconds(
    model: Path, workers: int, query: Content, documents: list[Content]
) -> tuple[float, list]:
    config = Qwen3VLRerankerConfig(
        model=f"local-dir:{model}", device="cpu", preprocess_workers=workers
    )
    backend = Qwen3VLRerankerBackend(config)
    backend.load()
    started = time.perf_counter()
    lengths = backend.prompt_lengths(query, documents)
    return time.perf_counter() - started, lengths


def enlarged(photo: Path, factor: float, folder: Path) -> Path:
    with Image.open(photo) as image:
        size = (round(image.width * factor), round(image.height * factor))
        out = folder / photo.name
        image.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(out, quality=90)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder of photos")
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--workers", default=f"1,{os.cpu_count() or 1}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--upscale",
        type=float,
        default=1.0,
        help="enlarge the photos first (this Flickr8k slice holds 200-px thumbnails; product "
        "photos are often 1,000-1,500 px), saved as JPEG quality 90",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: torch's default); the processor's patchify copies "
        "use them, so 1 shows the pool's effect alone",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    photos = sorted(args.data.glob("*.jpg"))[: args.docs]
    if len(photos) < args.docs:
        raise SystemExit(f"{args.data}: {len(photos)} photos, need {args.docs}")
    query = Content(text="a dog running on the beach")
    settings = [int(w) for w in args.workers.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="vlsearch-prep-bench-"))
    try:
        if args.upscale != 1.0:
            photos = [enlarged(photo, args.upscale, workdir) for photo in photos]
        for photo in photos:  # into the OS page cache, for every setting alike
            photo.read_bytes()
        with Image.open(photos[0]) as first:
            size = f"{first.width}x{first.height}"
        documents = [Content(image=photo, text=f"listing {i}") for i, photo in enumerate(photos)]
        model = build_tiny_qwen3_vl_reranker(workdir / "model")
        best: dict[int, float] = {}
        reference = None
        for _ in range(args.rounds):
            for workers in settings:
                seconds, lengths = prepare_seconds(model, workers, query, documents)
                reference = reference or lengths
                assert lengths == reference, "prompts differ between settings"
                best[workers] = min(best.get(workers, seconds), seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    base = best[settings[0]]
    print(
        f"{len(photos)} photos from {args.data} (first {size}; cold: fresh caches, files in "
        f"the OS page cache); {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
        f"best of {args.rounds} alternating rounds"
    )
    print(f"{'workers':>8s} {'seconds':>8s} {'photos/s':>9s} {'speedup':>8s}")
    for workers in settings:
        print(
            f"{workers:8d} {best[workers]:8.2f} {len(photos) / best[workers]:9.1f} "
            f"{base / best[workers]:7.2f}x"
        )


if __name__ == "__main__":
    main()
