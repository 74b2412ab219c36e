"""Qwen3-VL reranking: our batched scoring against the reference's one pair per forward,
same model, same pairs, one run.

Goal: on CPU, at least 3x more pairs per second than one full prompt per forward pass,
with scores equal within 1e-4. Three modes: the reference's way (each pair's whole prompt
alone, query images re-encoded for every pair, repeated documents scored again), batching
alone, and batching with shared work done once: the prompt start (system prompt,
instruction, query and its images) once per request, each distinct image or video through
the vision tower once, identical pairs scored once. The vision-output cache across
requests is off in every mode, so each timed request pays for its own vision work.

The model is a random Qwen3-VL (text hidden 256, 4 layers; no hub here): its rankings are
meaningless, only speed and agreement are measured. Each mode runs in its own process
(its own peak memory); modes alternate over rounds and the best round counts.

    PYTHONPATH=. python benchmarks/rerank.py --docs 100 --query text|image [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from pipeline.schema import Content
from rerankers.qwen3_vl.config import Qwen3VLRerankerConfig
from rerankers.qwen3_vl.reranker import Qwen3VLRerankerBackend
from rerankers.qwen3_vl.tiny import build_tiny_qwen3_vl_reranker

WORDS = [
    "the",
    "a",
    "dog",
    "cat",
    "runs",
    "park",
    "beach",
    "city",
    "river",
    "red",
    "blue",
    "small",
    "old",
    "photo",
    "video",
    "street",
]


def make_documents(folder: Path, count: int, seed: int = 0) -> list[Content]:
    """A mix like a product/photo/clip corpus: texts of very different lengths, images
    (some reused), short videos, and text+image items."""
    rng = np.random.default_rng(seed)

    def text(n_words: int) -> str:
        return " ".join(rng.choice(WORDS, n_words))

    def image(name: str, width: int, height: int) -> Path:
        path = folder / name
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        return path

    def video(name: str, seconds: int, shade: int) -> Path:
        path = folder / name
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=8)
            stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
            for i in range(seconds * 8):
                pixels = np.full((64, 96, 3), (i * 29 + shade) % 256, dtype=np.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            container.mux(stream.encode())
        return path

    shared = [image(f"shared{i}.png", 160, 120) for i in range(3)]
    documents: list[Content] = []
    for i in range(count):
        kind = i % 10
        if kind < 4:
            documents.append(Content(text=text(int(rng.integers(5, 400)))))
        elif kind < 6:
            size = [int(v) for v in rng.integers(48, 320, 2)]
            documents.append(Content(image=image(f"img{i}.jpg", *size)))
        elif kind == 6:
            documents.append(Content(image=shared[i % 3]))
        elif kind == 7:
            documents.append(Content(video=video(f"clip{i}.mp4", int(rng.integers(2, 5)), shade=i)))
        else:
            documents.append(Content(text=text(int(rng.integers(5, 60))), image=shared[i % 3]))
    return documents


BASELINE = "one pair per forward"


def make_query(folder: Path, kind: str) -> dict:
    if kind == "text":
        return {"text": "a small dog running on the beach"}
    pixels = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "query.jpg")
    return {"text": "this dress in red", "image": str(folder / "query.jpg")}


MODES = {
    # name: (max_batch_size, share_prefix and dedupe)
    BASELINE: (1, False),
    "batched": (32, False),
    "batched + shared work": (32, True),
}


def run_mode(mode: str, model: Path, manifest: Path, threads: int) -> dict:
    """One mode in a fresh process, so its peak memory is its own."""
    command = [sys.executable, __file__, "--worker", mode, "--model", str(model)]
    command += ["--manifest", str(manifest), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def best_round(results: list[dict]) -> dict:
    best = dict(min(results, key=lambda r: r["warm"]))
    best["cold"] = min(r["cold"] for r in results)
    best["peak_mib"] = max(r["peak_mib"] for r in results)
    return best


def worker(args: argparse.Namespace) -> None:
    items = json.loads(args.manifest.read_text())
    documents = [Content(**item) for item in items["documents"]]
    query = Content(**items["query"])
    batch_size, share = MODES[args.worker]
    config = Qwen3VLRerankerConfig(
        model=f"local-dir:{args.model}",
        device="cpu",
        max_batch_size=batch_size,
        share_prefix=share,
        dedupe=share,
        vision_cache_bytes=0,
    )
    backend = Qwen3VLRerankerBackend(config)
    backend.load()
    loaded_rss = rss_bytes()

    def timed() -> tuple[list[float], float]:
        started = time.perf_counter()
        report = backend.score_report(query, documents)
        seconds = time.perf_counter() - started
        assert not report.failures, report.failures
        return report.scores, seconds

    _, cold = timed()  # decodes and preprocesses, first run of each shape
    scores, warm = timed()  # decoded pixels cached; the model (vision tower too) runs again
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    lengths = [n for n in backend.prompt_lengths(query, documents) if n is not None]
    result = {
        "cold": cold,
        "warm": warm,
        "scores": scores,
        "lengths": lengths,
        "loaded_mib": loaded_rss / 2**20,
        "peak_mib": peak / 2**20,
    }
    print(json.dumps(result))


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--text-hidden", type=int, default=256, help="64 or >= 128")
    parser.add_argument("--text-layers", type=int, default=4)
    parser.add_argument(
        "--vision-hidden",
        type=int,
        default=64,
        help="the tiny test model (vlsearch models tiny) is text 64 x 2 layers, vision 32",
    )
    parser.add_argument(
        "--query",
        choices=["text", "image"],
        default="text",
        help="a short text, or a photo with a short text (search by image)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; on a shared machine more threads than idle cores make "
        "OpenMP wait on each other and the timings meaningless",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each mode")
    parser.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    if args.worker:
        worker(args)
        return

    workdir = Path(tempfile.mkdtemp(prefix="vlsearch-rerank-bench-"))
    try:
        model = build_tiny_qwen3_vl_reranker(
            workdir / "model",
            text_hidden=args.text_hidden,
            text_layers=args.text_layers,
            vision_hidden=args.vision_hidden,
            vision_layers=2,
        )
        (workdir / "media").mkdir()
        documents = make_documents(workdir / "media", args.docs)
        manifest = workdir / "documents.json"
        items = [d.model_dump(mode="json", exclude_none=True) for d in documents]
        query = make_query(workdir / "media", args.query)
        manifest.write_text(json.dumps({"query": query, "documents": items}))
        # Modes alternate over rounds and the best round counts, so load from other
        # processes on the machine hits every mode alike.
        rounds = [
            {mode: run_mode(mode, model, manifest, args.threads) for mode in MODES}
            for _ in range(args.rounds)
        ]
        results = {mode: best_round([r[mode] for r in rounds]) for mode in MODES}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, len(documents), args)


def report(results: dict[str, dict], n: int, args: argparse.Namespace) -> None:
    single = results[BASELINE]
    lengths = single["lengths"]
    print("RANDOM WEIGHTS: scores and rankings are meaningless; only speed and agreement count.")
    print(
        f"{n} documents (prompt tokens {min(lengths)}..{max(lengths)}, mean "
        f"{int(np.mean(lengths))}); {args.query} query; text hidden {args.text_hidden} x "
        f"{args.text_layers} layers, vision {args.vision_hidden} x 2; "
        f"CPU, torch threads {args.threads}; best of {args.rounds} alternating rounds"
    )
    header = f"{'mode':24s} {'cold s':>7s} {'warm s':>7s} {'pairs/s':>8s} {'speedup':>8s}"
    print(header + f" {'max |delta|':>11s} {'RSS loaded MiB':>15s} {'peak MiB':>9s}")
    for name, result in results.items():
        delta = float(np.max(np.abs(np.array(result["scores"]) - np.array(single["scores"]))))
        print(
            f"{name:24s} {result['cold']:7.2f} {result['warm']:7.2f} {n / result['warm']:8.1f} "
            f"{single['warm'] / result['warm']:7.2f}x {delta:11.1e} "
            f"{result['loaded_mib']:15.0f} {result['peak_mib']:9.0f}"
        )
    print("speedup: warm time (decoded pixels cached) of one pair per forward / this mode's")
    print("goals: batched >= 3x one pair per forward; max |delta| <= 1e-4")


if __name__ == "__main__":
    main()
