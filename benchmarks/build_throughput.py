"""Build throughput: the whole pipeline (read -> decode -> embed -> write) against the bare
model forward on pre-made tensors, same model, same images, one run.

Goal (issue 2): the pipeline reaches at least 0.9 of the bare forward rate.
Weights are random (no hub here): compute is the same as the real ViT-B-32.

    python benchmarks/build_throughput.py --data ../shared/data/flickr8k-1k/images --limit 1000
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import torch

from indexers.build import build_index
from indexers.embedders import create_embedder
from pipeline.config import validate_config
from pipeline.media import load_image


def bare_forward_rate(embedder, images: list[Path], batch_size: int) -> float:
    """Images/s of encode_image alone, on tensors prepared before the clock starts."""
    tensors = [embedder.image_transform(load_image(path)) for path in images]
    batches = [torch.stack(tensors[i : i + batch_size]) for i in range(0, len(tensors), batch_size)]
    started = time.perf_counter()
    for batch in batches:
        embedder.embed_image_tensors(batch)
    return len(tensors) / (time.perf_counter() - started)


def pipeline_rate(config, embedder, images: list[Path], workdir: Path):
    source = workdir / "source"
    source.mkdir()
    for path in images:
        (source / path.name).symlink_to(path.resolve())
    report = build_index(config, embedder, source, workdir / "index")
    assert report.indexed == len(images), report
    return report.indexed / report.timings.total_s, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flickr8k-1k/images"))
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    images = sorted(args.data.glob("*.jpg"))[: args.limit]
    if not images:
        raise SystemExit(f"no .jpg images under {args.data}")
    config = validate_config(
        {
            "embedder": {"model": args.model, "pretrained": None, "batch_size": args.batch_size},
            "build": {"workers": args.workers, "checkpoint_every": 256},
        }
    )
    embedder = create_embedder(config.embedder)
    embedder.embed_image_tensors(torch.stack([embedder.image_transform(load_image(images[0]))] * 2))

    workdir = Path(tempfile.mkdtemp(prefix="vlsearch-bench-"))
    try:
        bare_before = bare_forward_rate(embedder, images, args.batch_size)
        rate, report = pipeline_rate(config, embedder, images, workdir)
        bare_after = bare_forward_rate(embedder, images, args.batch_size)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    bare = (bare_before + bare_after) / 2
    t = report.timings
    print(f"model {args.model} (random weights), {len(images)} images, batch {args.batch_size}, "
          f"{args.workers} decode worker(s), torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'bare forward (before / after)':34s} {bare_before:8.2f} / {bare_after:.2f} img/s")
    print(f"{'pipeline (read+decode+embed+write)':34s} {rate:8.2f} img/s")
    print(f"{'ratio pipeline / bare':34s} {rate / bare:8.3f}   (goal >= 0.9)")
    print(f"stages (s): read {t.read_s:.2f}  decode(workers) {t.decode_s:.2f}  "
          f"waited for decode {t.decode_wait_s:.2f}  embed {t.embed_s:.2f}  "
          f"write {t.write_s:.2f}  total {t.total_s:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
