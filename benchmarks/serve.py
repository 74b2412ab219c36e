"""Serving overhead and saturation: ``POST /v1/indexes/NAME/search`` over HTTP against
``IndexSession.search`` in this process, same index, same queries, one run; then a
saturation run against the server's bounded model stages.

Goals (issue 10):

1. HTTP adds at most 5 ms at p50 to a search without rerank. One keep-alive connection
   (``httpx.Client``), requests one after another, against ``vlsearch serve`` in its own
   process (so client and server do not share a GIL); the in-process side calls
   ``IndexSession.search`` on the same index with the same queries (Flickr8k captions as
   text queries). Both without rerank and with the tiny reranker. The two sides alternate
   in rounds (who goes first alternates too) so machine noise hits both alike; the
   overhead is the median over the rounds of each round's p50 difference.
2. Saturation: 4 x (max_concurrency + max_queue) clients, each a thread with its own
   keep-alive connection, send searches with rerank back to back (no back-off). Every
   refused request (503) is answered within 50 ms, with Retry-After; no request gets a
   504 (``serve.request_timeout_s`` is generous); nothing but 200 and 503 comes back.

The server is ``vlsearch serve`` itself (its CLI, in a child process) with one addition: a
timer around the whole ASGI app (:class:`TimedApp`), so each search's time inside the app
(middleware, routing, the model stage, the response) is printed beside what the client
saw; the rest is uvicorn's HTTP parsing and writing, waiting for the event loop, the
socket and the client. During the saturation run it also counts the server's full garbage
collections and the event loop's lag (how late a 5 ms heartbeat wakes). ``--gc-freeze``
has the server ``gc.freeze()`` before that run (what a fix for those collections would
give); ``--retry-after`` makes the clients wait a 503's Retry-After, as polite clients do.
The benchmark freezes its own process before that run: it holds the in-process side's
models too, and one of its own full collections would stall every client thread.

Both processes run torch on ``--threads`` threads (default 1). On a small shared machine,
two threads per process stall whenever another job holds a core (OpenMP waits for its
slowest thread at every operator): on the 2-core VM of docs/benchmarks.md a rerank search
took 36 ms with one thread and about 1 s with two, in the same minute, which swamps what
is measured here.

The models are the tiny random-weight ones (``profile: tiny``): rankings are meaningless,
and the tiny reranker is cheap (tens of ms per search), so the saturation run measures
the server's queueing and refusals, not a real model's load. The index (the 1,000
photos, built once with ``vlsearch index build``) is kept in ``--workdir`` for
``--reuse``.

About 2.5 minutes on 2 cores (the build, the first time, about 12 s more):

    PYTHONPATH=. python benchmarks/serve.py --workdir /tmp/vlsearch-bench-serve [--reuse]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.child_server import child_server, free_port  # noqa: E402
from pipeline.config import validate_config  # noqa: E402
from pipeline.pipeline import Pipeline  # noqa: E402
from pipeline.schema import Query  # noqa: E402
from pipeline.session import IndexSession  # noqa: E402

NAME = "flickr"
DATA = ROOT.parent / "shared" / "data" / "flickr8k-1k"
CHILD = "--vlsearch-with-timer"  # argv[1] of the server process: the CLI, timed
TIMINGS = "/__bench/timings"
GC_FREEZE = "/__bench/gc-freeze"
HEARTBEAT = "/__bench/heartbeat"
HEARTBEAT_S = 0.005
HTTP_GOAL_MS = 5.0
REFUSAL_GOAL_MS = 50.0


# -- the server -------------------------------------------------------------------------


class TimedApp:
    """The served app inside a timer. GET /__bench/timings answers (and clears) the
    (status, seconds in the app) of every search, the seconds of each full garbage
    collection (generation 2) and, once GET /__bench/heartbeat has started it, how late
    a 5 ms heartbeat on the event loop woke each time (the loop's lag: what a request
    waits for before the app even sees it). GET /__bench/gc-freeze collects, then moves
    every object into the collector's permanent generation (``gc.freeze()``)."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.records: list[tuple[int, float]] = []
        self.collections: list[float] = []
        self.lags: list[float] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._collecting = 0.0
        gc.callbacks.append(self._timed_collection)

    def _timed_collection(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._collecting = time.perf_counter()
        else:
            self.collections.append(time.perf_counter() - self._collecting)

    async def _beat(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(HEARTBEAT_S)
            self.lags.append(time.perf_counter() - before - HEARTBEAT_S)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in (TIMINGS, GC_FREEZE, HEARTBEAT):
            answer: dict[str, Any] = {}
            if scope["path"] == TIMINGS:
                answer = {"searches": self.records, "gc": self.collections, "lags": self.lags}
                self.records, self.collections, self.lags = [], [], []
            elif scope["path"] == HEARTBEAT:
                self._heartbeat = self._heartbeat or asyncio.create_task(self._beat())
            else:
                started = time.perf_counter()
                gc.collect()
                answer = {
                    "objects": len(gc.get_objects()),
                    "seconds": time.perf_counter() - started,
                }
                gc.freeze()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": json.dumps(answer).encode()})
            return
        started = time.perf_counter()
        status = 0

        async def noted(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            if scope["path"].endswith("/search"):
                self.records.append((status, time.perf_counter() - started))


def timed_vlsearch(argv: list[str]) -> None:
    """``vlsearch ARGV``, every app it runs wrapped in :class:`TimedApp` (once built:
    the web page is mounted into the API's app first)."""
    import pipeline.api.server as api_server
    from pipeline.cli import app as cli

    run_app = api_server.run_app
    api_server.run_app = lambda app, *rest, **named: run_app(TimedApp(app), *rest, **named)  # type: ignore[assignment]
    cli(argv, prog_name="vlsearch")


def tiny_env(threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ, VLSEARCH_MODELS="tiny")
    if threads is not None:  # torch's intra-op threads in the child
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@contextmanager
def server(index: Path, settings: dict[str, object], log: Path, threads: int) -> Iterator[str]:
    """``vlsearch serve`` in its own process; yields its base URL once /readyz says 200."""
    port = free_port()
    command = [sys.executable, __file__, CHILD, "serve", "--index", f"{NAME}={index}"]
    command += ["--port", str(port)]
    for key, value in settings.items():
        command += ["--set", f"{key}={value}"]
    with child_server(command, tiny_env(threads), port, log) as base:
        yield base


@dataclass
class Served:
    """What the server timed since the last look (see :class:`TimedApp`)."""

    searches: list[tuple[int, float]]
    collections: list[float]
    lags: list[float]


def in_app(base: str) -> Served:
    answer = httpx.get(f"{base}{TIMINGS}").json()
    searches = [(status, seconds) for status, seconds in answer["searches"]]
    return Served(searches, answer["gc"], answer["lags"])


# -- setup ------------------------------------------------------------------------------


def captions(path: Path, count: int) -> list[str]:
    """The first ``count`` distinct captions, in file order (five per photo)."""
    seen: dict[str, None] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            seen.setdefault(row["caption"].strip(), None)
            if len(seen) == count:
                break
    if len(seen) < count:
        raise SystemExit(f"{path} has only {len(seen)} distinct captions, not {count}")
    return list(seen)


def build_index(images: Path, directory: Path, reuse: bool) -> float | None:
    """Seconds ``vlsearch index build`` took, or None when a kept index was reused."""
    if reuse and (directory / "manifest.json").is_file():
        return None
    shutil.rmtree(directory, ignore_errors=True)
    command = [sys.executable, "-m", "pipeline", "index", "build"]
    command += ["--input", str(images), "--out", str(directory)]
    started = time.perf_counter()
    done = subprocess.run(command, env=tiny_env(), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"vlsearch index build failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - started


# -- sequential latency -----------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile (nan for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Block:
    """One side's pass over the queries: latencies (s), the pass's wall time, the seconds
    of each search itself, and for the HTTP side the seconds the server spent in the app."""

    latencies: list[float]
    wall_s: float
    searches: list[float]  # SearchTimings.total_s: the search itself, where it ran
    in_app: list[float] = field(default_factory=list)


@dataclass
class Side:
    blocks: list[Block] = field(default_factory=list)

    def quantile(self, q: float, values: Callable[[Block], list[float]] | None = None) -> float:
        """The ``q`` quantile over all the rounds together."""
        pick = values or (lambda block: block.latencies)
        return quantile([value for block in self.blocks for value in pick(block)], q)

    def rate(self) -> float:
        return statistics.median(len(b.latencies) / b.wall_s for b in self.blocks)


Run = Callable[[str], tuple[list[str], float]]  # a query -> result ids, search seconds


def timed_block(run: Run, queries: list[str]) -> Block:
    latencies, searches = [], []
    started = time.perf_counter()
    for query in queries:
        t0 = time.perf_counter()
        _, search_s = run(query)
        latencies.append(time.perf_counter() - t0)
        searches.append(search_s)
    return Block(latencies, time.perf_counter() - started, searches)


def http_search(client: httpx.Client, base: str, rerank: bool) -> Run:
    url = f"{base}/v1/indexes/{NAME}/search"

    def run(text: str) -> tuple[list[str], float]:
        response = client.post(url, json={"query": {"text": text}, "top_k": 10, "rerank": rerank})
        if response.status_code != 200:
            raise SystemExit(f"HTTP {response.status_code}: {response.text}")
        answer = response.json()
        return [hit["id"] for hit in answer["results"]], answer["timings"]["total_s"]

    return run


def local_search(session: IndexSession, rerank: bool) -> Run:
    def run(text: str) -> tuple[list[str], float]:
        outcome = session.search(Query(text=text), 10, None, rerank)
        return [hit.id for hit in outcome.results], outcome.timings.total_s

    return run


def compare(
    session: IndexSession, base: str, queries: list[str], rounds: int, rerank: bool
) -> tuple[Side, Side, int]:
    """HTTP and in-process sides over the same queries, alternating in rounds; also how
    many queries got the same ids in the same order from both."""
    http, local = Side(), Side()
    with httpx.Client(timeout=300) as client:
        remote_run, local_run = http_search(client, base, rerank), local_search(session, rerank)
        same = sum(remote_run(q)[0] == local_run(q)[0] for q in queries)  # also warms up
        in_app(base)
        for round_ in range(rounds):
            order = [(http, remote_run), (local, local_run)]
            for side, run in order if round_ % 2 == 0 else order[::-1]:
                block = timed_block(run, queries)
                if side is http:
                    block.in_app = [seconds for _, seconds in in_app(base).searches]
                side.blocks.append(block)
    return http, local, same


# -- saturation -------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | str  # the HTTP status, or the exception's class name
    seconds: float
    retry_after: str | None = None


def saturate(
    base: str, queries: list[str], clients: int, seconds: float, wait: bool = False
) -> list[Answer]:
    """``clients`` threads, each with its own connection, sending searches with rerank
    back to back for ``seconds`` (``wait``: after a 503, for its Retry-After first); all
    start together."""
    url = f"{base}/v1/indexes/{NAME}/search"
    answers: list[list[Answer]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients)

    def client(number: int) -> None:
        mine = answers[number]
        with httpx.Client(timeout=600) as http:
            http.get(f"{base}/healthz")  # connected before the clock starts
            start.wait()
            deadline = time.perf_counter() + seconds
            i = number * len(queries) // clients
            while time.perf_counter() < deadline:
                body = {"query": {"text": queries[i % len(queries)]}, "top_k": 10, "rerank": True}
                i += 1
                t0 = time.perf_counter()
                try:
                    response = http.post(url, json=body)
                except httpx.HTTPError as exc:
                    mine.append(Answer(type(exc).__name__, time.perf_counter() - t0))
                    continue
                retry_after = response.headers.get("retry-after")
                mine.append(Answer(response.status_code, time.perf_counter() - t0, retry_after))
                if wait and response.status_code == 503 and retry_after is not None:
                    time.sleep(min(float(retry_after), max(0.0, deadline - time.perf_counter())))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [answer for mine in answers for answer in mine]


# -- report -----------------------------------------------------------------------------


def ms(values: list[float]) -> str:
    """p50/p99/max in ms."""
    if not values:
        return "-"
    return "/".join(f"{1e3 * quantile(values, q):.1f}" for q in (0.5, 0.99, 1.0))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def p50_overheads(http: Side, local: Side) -> list[float]:
    """HTTP p50 − in-process p50 (ms), per round."""
    return [
        1e3 * (quantile(h.latencies, 0.5) - quantile(p.latencies, 0.5))
        for h, p in zip(http.blocks, local.blocks, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="images/ and captions.txt")
    parser.add_argument("--queries", type=int, default=125, help="captions used as queries")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per side and mode")
    parser.add_argument("--top-n", type=int, default=10, help="rerank.top_n")
    parser.add_argument("--max-concurrency", type=int, default=2, help="serve.max_concurrency")
    parser.add_argument("--max-queue", type=int, default=4, help="serve.max_queue")
    parser.add_argument("--clients", type=int, default=None, help="default: 4 x (conc + queue)")
    parser.add_argument("--seconds", type=float, default=20.0, help="saturation run length")
    parser.add_argument(
        "--retry-after",
        action="store_true",
        help="saturation clients wait a 503's Retry-After before sending again",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="serve.request_timeout_s")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="before the saturation run, collect and gc.freeze() in the server",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads, here and in the server alike"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--reuse", action="store_true", help="reuse the index in --workdir")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # not the tiny profile's warning

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vlsearch-bench-serve-"))
    workdir.mkdir(parents=True, exist_ok=True)
    index = workdir / "index"
    images = args.data / "images"
    build_s = build_index(images, index, args.reuse)
    queries = captions(args.data / "captions.txt", args.queries)
    clients = args.clients or 4 * (args.max_concurrency + args.max_queue)
    settings: dict[str, object] = {
        "rerank.top_n": args.top_n,
        "serve.max_concurrency": args.max_concurrency,
        "serve.max_queue": args.max_queue,
        "serve.request_timeout_s": args.timeout,
    }

    torch.set_num_threads(args.threads)
    pipeline = Pipeline(validate_config({"profile": "tiny", "rerank": {"top_n": args.top_n}}))
    session = pipeline.session(index)
    photos = len(list(images.glob("*.jpg")))
    if len(session.index) != photos:
        raise SystemExit(f"{index} holds {len(session.index)} assets, not {photos}: no --reuse")
    pipeline.load_reranker()

    rows = []
    with server(index, settings, workdir / "server.log", args.threads) as base:
        for rerank in (False, True):
            http, local, same = compare(session, base, queries, args.rounds, rerank)
            rows.append((rerank, http, local, same, os.getloadavg()[0]))
        frozen = httpx.get(f"{base}{GC_FREEZE}", timeout=60).json() if args.gc_freeze else None
        httpx.get(f"{base}{HEARTBEAT}")
        in_app(base)
        # This process holds the in-process side's models too: a full collection here
        # would stall every client thread and be counted as the server's latency.
        gc.collect()
        gc.freeze()
        started = time.perf_counter()
        answers = saturate(base, queries, clients, args.seconds, args.retry_after)
        saturation_s = time.perf_counter() - started
        saturation_load = os.getloadavg()[0]
        served = in_app(base)
    session.close()

    built = "reused" if build_s is None else f"built in {build_s:.1f} s"
    print(
        f"index: {photos} Flickr8k photos ({built}); tiny random-weight models: rankings are "
        f"meaningless, only speed is measured; {len(queries)} caption queries, top_k 10, "
        f"rerank.top_n {args.top_n}, {args.rounds} rounds per side, {args.threads} torch "
        "thread(s) per process; quantiles over all rounds, req/s the median round's"
    )
    print()
    print(
        f"{'rerank':6} {'side':10} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'req/s':>6} "
        f"{'in app p50':>10} {'search p50':>10} {'same ids':>9} {'load':>5}"
    )
    for rerank, http, local, same, load in rows:
        for label, side in (("HTTP", http), ("in-process", local)):
            app_p50 = (
                f"{1e3 * side.quantile(0.5, lambda b: b.in_app):10.2f}" if side is http else ""
            )
            print(
                f"{'on' if rerank else 'off':6} {label:10} {1e3 * side.quantile(0.5):7.2f} "
                f"{1e3 * side.quantile(0.95):7.2f} {1e3 * side.quantile(0.99):7.2f} "
                f"{side.rate():6.1f} {app_p50:>10} "
                f"{1e3 * side.quantile(0.5, lambda b: b.searches):10.2f} "
                f"{f'{same}/{len(queries)}':>9} {load:5.2f}"
            )
        diffs = p50_overheads(http, local)
        print(
            f"{'':6} {'HTTP − in':10} {statistics.median(diffs):7.2f}  median of the rounds' p50 "
            f"differences (from {min(diffs):.2f} to {max(diffs):.2f})"
        )
    print(
        "in app: the server's time in the ASGI app (middleware, routing, model stage, "
        "response); search: SearchTimings.total_s, the search alone, in the server's stage "
        "thread (HTTP) or here (in-process)"
    )
    print()

    statuses = [answer.status for answer in answers]
    print(
        f"saturation: {clients} clients sending searches with rerank "
        f"{'(waiting Retry-After after a 503)' if args.retry_after else 'back to back'} for "
        f"{args.seconds:g} s; "
        f"serve.max_concurrency {args.max_concurrency}, serve.max_queue {args.max_queue}, "
        f"request_timeout_s {args.timeout:g}; load {saturation_load:.2f}"
    )
    print(f"{'answer':8} {'count':>6} {'share':>7} {'client p50/p99/max ms':>22} {'in app':>22}")
    for status in (200, 503, 504):
        client_s = [a.seconds for a in answers if a.status == status]
        app_s = [seconds for code, seconds in served.searches if code == status]
        print(
            f"{status:<8} {len(client_s):6d} {100 * len(client_s) / len(answers):6.1f}% "
            f"{ms(client_s):>22} {ms(app_s):>22}"
        )
    others = [status for status in statuses if status not in (200, 503, 504)]
    print(f"{'other':8} {len(others):6d} {sorted(set(map(str, others))) or ''}")
    refused = [a for a in answers if a.status == 503]
    without_retry_after = sum(a.retry_after is None for a in refused)
    accepted = statuses.count(200)
    print(
        f"answered {len(answers) / saturation_s:.0f}/s, accepted {accepted / saturation_s:.1f}/s "
        f"({saturation_s:.1f} s in all); refusals without Retry-After: {without_retry_after}"
    )
    collections = served.collections
    longest = f", the longest {1e3 * max(collections):.0f} ms" if collections else ""
    froze = (
        f" (after gc.freeze() of {frozen['objects']:,} objects; a full collection then took "
        f"{1e3 * frozen['seconds']:.0f} ms)"
        if frozen
        else ""
    )
    print(f"full garbage collections in the server: {len(collections)}{longest}{froze}")
    print(
        f"server event loop lag (how late a {1e3 * HEARTBEAT_S:g} ms heartbeat woke), "
        f"p50/p99/max ms: {ms(served.lags)}"
    )
    print(f"load: 1-minute load average on {os.cpu_count()} cores")
    print()

    overhead = statistics.median(p50_overheads(rows[0][1], rows[0][2]))
    print(
        f"{verdict(overhead <= HTTP_GOAL_MS)}: HTTP adds {overhead:.2f} ms at p50 to a search "
        f"without rerank (goal <= {HTTP_GOAL_MS:g} ms)"
    )
    slowest = max((a.seconds for a in refused), default=float("nan"))
    refusals_ok = bool(refused) and slowest <= REFUSAL_GOAL_MS / 1e3 and not without_retry_after
    app_slowest = max((s for code, s in served.searches if code == 503), default=float("nan"))
    print(
        f"{verdict(refusals_ok)}: {len(refused)} refusals, the slowest answered in "
        f"{1e3 * slowest:.1f} ms as the client saw it ({1e3 * app_slowest:.1f} ms in the app; "
        f"goal <= {REFUSAL_GOAL_MS:g} ms, each with Retry-After)"
    )
    timeouts = statuses.count(504)
    print(
        f"{verdict(timeouts == 0 and not others)}: {timeouts} timeouts (504) and {len(others)} "
        "other statuses or errors (goal: none)"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD]:
        timed_vlsearch(sys.argv[2:])
    else:
        main()
