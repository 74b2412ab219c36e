"""The web page's Rerank tab: time from a click on Rerank to the result cards rendered,
against the same request through ``Pipeline.rerank`` in this process, one run.

Goal (issue 11): with the tiny models and 10 candidates, the UI adds at most 150 ms: the
median over the rounds of each round's UI time − ``Pipeline.rerank`` time.

The server is ``vlsearch ui`` itself (its CLI, ``--set profile=tiny``, no index: the
Rerank tab alone) in its own process, so the browser, the server and the in-process side
share no GIL; one addition times the page's Rerank callback (``PageActions.rerank``) and
the model work inside it (``Pipeline.explain_all``), so the UI time splits into the
browser and Gradio's transport, the page's own Python, and the model. The browser is
Debian's chromium driven by Playwright (its flags as in ``tests/test_ui_browser.py``).

The candidates are what a user would upload: 5 Flickr8k photos (``examples/media`` when
the data is absent) as files and 5 captions of other photos pasted as text snippets,
uploaded once before the rounds; each round's query is another caption, the same on both
sides. "Score each part ... alone" is off and frames are off, so the page scores the same
10 pairs as ``Pipeline.rerank`` (a ``RerankRequest`` of the same query and documents);
every round the page's scores are checked against it (allclose, atol 1e-4: the cards show
4 decimals). Both sides load the reranker and run two warm-up requests before timing, so
both time a warm model with its image caches filled (a user re-clicking Rerank).

Timing on the page is done in the browser, on its clock: a capturing click listener on
``#vls-rerank`` notes ``performance.now()`` when Playwright's real (trusted) click arrives,
and a MutationObserver on ``#vls-rerank-results`` notes when 10 cards whose text differs
from the previous render are in the DOM, then the first animation frame after that
(``requestAnimationFrame`` then a task: the frame that paints them). Timing Playwright's
``click`` and ``wait_for_function`` from Python instead would add its own round trips to
the browser (actionability checks, polling) to what is measured. The queries differ
from round to round because Gradio morphs the HTML in place: the card elements survive
a new render, so only their text tells a fresh render from a stale one.

Each round times one click and one ``Pipeline.rerank``, alternating who goes first;
p50/p95 are over the rounds. Both processes run torch on ``--threads`` threads (default
1; see ``benchmarks/serve.py`` for why two stall on a shared 2-core machine). The models
are tiny random-weight ones: scores are meaningless, timings are real.

About 35 s on 2 cores (``--quick``: 3 rounds, about 20 s):

    PYTHONPATH=. python benchmarks/ui.py [--rounds 15] [--quick] [--no-queue]
"""

from __future__ import annotations

import argparse
import csv
import functools
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.child_server import child_server, free_port  # noqa: E402
from pipeline.config import validate_config  # noqa: E402
from pipeline.pipeline import Pipeline  # noqa: E402
from rerankers.request import RequestItem, RerankRequest  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "flickr8k-1k"
EXAMPLES = ROOT / "examples" / "media"
CHILD = "--vlsearch-ui-timed"  # argv[1] of the server process: the CLI, its callback timed
TIMINGS_ENV = "VLSEARCH_BENCH_UI_TIMINGS"
CHROMIUM = Path(os.environ.get("VLSEARCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [  # tests/test_ui_browser.py's: offline, no GPU, no first-run dialogs
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IMAGES = 5
SNIPPETS = 5
CANDIDATES = IMAGES + SNIPPETS
WARMUP = 2
GOAL_MS = 150.0
WAIT_MS = 120_000
SETTLE_S = 0.3  # after each side: Gradio's follow-up status event and the SSE close
FALLBACK_TEXTS = [
    "a rocket standing on its launch pad",
    "an astronaut in a white suit",
    "a cup of coffee on a table",
    "a cat looking at the camera",
    "an old film camera",
    "a dog running on the beach",
    "two children playing in a park",
    "a man riding a bicycle down a street",
]

# Armed before each timed click (see the module docstring); the result lands in
# window.__vlsBench: click, dom and painted times in ms on the page's clock.
ARM = """(count) => {
  const box = document.querySelector('#vls-rerank-results');
  const shown = () => {
    const cards = box.querySelector('.vls-cards');
    return cards && cards.children.length === count ? cards.textContent : null;
  };
  const before = shown();
  const bench = (window.__vlsBench = { click: null, dom: null, painted: null });
  document.querySelector('#vls-rerank').addEventListener(
    'click', () => { bench.click = performance.now(); }, { capture: true, once: true });
  const observer = new MutationObserver(() => {
    const now = shown();
    if (bench.click === null || now === null || now === before) return;
    bench.dom = performance.now();
    observer.disconnect();
    requestAnimationFrame(() => setTimeout(() => { bench.painted = performance.now(); }));
  });
  observer.observe(box, { childList: true, subtree: true, characterData: true });
}"""
SHOWN = """els => els.map(e => [e.dataset.label, e.querySelector('.vls-score').textContent])"""


# -- the server -------------------------------------------------------------------------


def timed_vlsearch(argv: list[str]) -> None:
    """``vlsearch ARGV`` with the Rerank callback and its model work timed: each call
    appends ``callback SECONDS`` or ``model SECONDS`` to the file in $VLSEARCH_BENCH_UI_TIMINGS."""
    from pipeline.cli import app as cli
    from pipeline.ui.actions import PageActions

    log = Path(os.environ[TIMINGS_ENV])

    def record(kind: str, started: float) -> None:
        with log.open("a") as out:
            out.write(f"{kind} {time.perf_counter() - started}\n")

    rerank = PageActions.rerank
    explain_all = Pipeline.explain_all

    # functools.wraps keeps the signature Gradio reads (its gr.Progress parameter).
    @functools.wraps(rerank)
    async def timed_rerank(self: PageActions, *args: Any, **kwargs: Any) -> str:
        started = time.perf_counter()
        try:
            return await rerank(self, *args, **kwargs)
        finally:
            record("callback", started)

    @functools.wraps(explain_all)
    def timed_explain_all(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return explain_all(self, *args, **kwargs)
        finally:
            record("model", started)

    PageActions.rerank = timed_rerank  # type: ignore[method-assign]
    Pipeline.explain_all = timed_explain_all  # type: ignore[method-assign]
    cli(argv, prog_name="vlsearch")


@contextmanager
def page_server(
    folder: Path, threads: int, queue: bool, meanwhile: Callable[[], None]
) -> Iterator[str]:
    """``vlsearch ui`` in its own process, its log and timings in ``folder``; runs
    ``meanwhile`` while it starts, then yields its base URL once /readyz says 200."""
    port, log = free_port(), folder / "server.log"
    command = [sys.executable, __file__, CHILD, "ui", "--port", str(port), "--set", "profile=tiny"]
    command += [] if queue else ["--no-queue"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env[TIMINGS_ENV] = str(folder / "timings")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with child_server(command, env, port, log, meanwhile) as base:
        yield base


@dataclass
class ServerTimings:
    """The server's timings file, read a round at a time."""

    path: Path
    seen: int = 0

    def fresh(self) -> dict[str, list[float]]:
        """Seconds by kind (callback, model) written since the last call."""
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        found: dict[str, list[float]] = {"callback": [], "model": []}
        for line in lines[self.seen :]:
            kind, seconds = line.split()
            found[kind].append(float(seconds))
        self.seen = len(lines)
        return found


# -- the inputs -------------------------------------------------------------------------


@dataclass
class Inputs:
    images: list[Path]
    snippets: list[str]
    queries: list[str]  # one per warm-up request and round, consecutive ones distinct
    source: str


def inputs(data: Path, queries: int) -> Inputs:
    """Flickr8k: the first 5 photos as files, the first caption of the next 5 as snippets,
    the first caption of the photos after them as queries. Without the data: the examples'
    photos and fixed texts."""
    captions = data / "captions.txt"
    if captions.is_file():
        first: dict[str, str] = {}
        with captions.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                first.setdefault(row["image"], row["caption"].strip())
        names = list(first)
        needed = IMAGES + SNIPPETS + queries
        if len(names) < needed:
            raise SystemExit(f"{captions} has {len(names)} photos, not {needed}")
        return Inputs(
            images=[data / "images" / name for name in names[:IMAGES]],
            snippets=[first[name] for name in names[IMAGES:CANDIDATES]],
            queries=[first[name] for name in names[CANDIDATES:needed]],
            source=f"Flickr8k ({data})",
        )
    texts = FALLBACK_TEXTS
    return Inputs(
        images=sorted(EXAMPLES.glob("*.jpg"))[:IMAGES],
        snippets=texts[:SNIPPETS],
        queries=[texts[i % len(texts)] for i in range(queries)],
        source=f"examples ({EXAMPLES}; no {captions})",
    )


def labels(given: Inputs) -> list[str]:
    """The page's card labels in document order: files first, then the snippets."""
    return [path.name for path in given.images] + [f"snippet {n + 1}" for n in range(SNIPPETS)]


def request(given: Inputs, query: str) -> RerankRequest:
    documents = [RequestItem(image=str(path)) for path in given.images]
    documents += [RequestItem(text=text) for text in given.snippets]
    return RerankRequest(query=RequestItem(text=query), documents=documents)


# -- the page ---------------------------------------------------------------------------


def open_page(browser: Any, base: str, given: Inputs) -> Any:
    """The Rerank tab with the model loaded, the candidates uploaded and the breakdowns off."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{base}/ui/")
    page.wait_for_selector("#vls-status")
    page.locator("#vls-load").click()
    page.wait_for_function(
        "() => document.querySelector('#vls-status').innerText.includes('loaded on')"
    )
    page.get_by_role("tab", name="Rerank").click()
    page.locator("#vls-candidates input[type=file]").set_input_files(
        [str(path) for path in given.images]
    )
    info = page.locator("#vls-upload-info")
    for path in given.images:
        info.get_by_text(path.name).wait_for()
    page.locator("#vls-snippets textarea").fill("\n".join(given.snippets))
    page.get_by_text("Settings").click()
    page.get_by_label("Score each part of a text+image document alone").uncheck()
    frames = page.locator("#vls-frames input[type=checkbox]")
    if frames.is_checked():
        frames.uncheck()
    return page


@dataclass
class Click:
    painted_ms: float  # click -> the frame after the cards are in the DOM
    dom_ms: float  # click -> the cards in the DOM
    scores: dict[str, float]  # by card label, as the page shows them


def click_rerank(page: Any, query: str) -> Click:
    page.locator("#vls-rerank-text textarea").fill(query)
    page.evaluate(ARM, CANDIDATES)
    page.locator("#vls-rerank").click()
    page.wait_for_function("() => window.__vlsBench.painted !== null", timeout=WAIT_MS)
    bench = page.evaluate("() => window.__vlsBench")
    shown = page.eval_on_selector_all("#vls-rerank-results .vls-card", SHOWN)
    return Click(
        painted_ms=bench["painted"] - bench["click"],
        dom_ms=bench["dom"] - bench["click"],
        scores={label: float(score) for label, score in shown},
    )


# -- report -----------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Round:
    ui: Click
    pipeline_ms: float
    callback_ms: float  # the page's Rerank callback in the server
    model_ms: float  # Pipeline.explain_all inside it
    max_diff: float  # the largest |page score − Pipeline.rerank score|


def row(name: str, values: list[float]) -> str:
    return f"{name:38} {quantile(values, 0.5):8.1f} {quantile(values, 0.95):8.1f}"


def timed_rounds(
    page: Any, pipeline: Pipeline, given: Inputs, timings: ServerTimings
) -> list[Round]:
    """Warm-up requests on both sides, then one timed round per remaining query."""
    for query in given.queries[:WARMUP]:
        click_rerank(page, query)
        pipeline.rerank(request(given, query))
    time.sleep(SETTLE_S)
    timings.fresh()
    rounds = []
    for number, query in enumerate(given.queries[WARMUP:]):
        click: Click | None = None
        pipeline_s, scores = 0.0, np.zeros(0)
        for side in ("ui", "pipeline") if number % 2 == 0 else ("pipeline", "ui"):
            if side == "ui":
                click = click_rerank(page, query)
            else:
                started = time.perf_counter()
                answer = pipeline.rerank(request(given, query))
                pipeline_s = time.perf_counter() - started
                scores = np.array(answer.scores)
            time.sleep(SETTLE_S)
        assert click is not None
        server = timings.fresh()
        if len(server["callback"]) != 1 or len(server["model"]) != 1:
            raise SystemExit(f"round {number}: expected one Rerank callback, got {server}")
        shown = np.array([click.scores.get(name, np.nan) for name in labels(given)])
        rounds.append(
            Round(
                ui=click,
                pipeline_ms=1e3 * pipeline_s,
                callback_ms=1e3 * server["callback"][0],
                model_ms=1e3 * server["model"][0],
                max_diff=float(np.max(np.abs(shown - scores))),
            )
        )
    return rounds


def report(results: list[Round], given: Inputs, args: argparse.Namespace) -> bool:
    """Prints the tables and the verdict; whether the page scored as Pipeline.rerank did."""
    print(
        f"{CANDIDATES} candidates ({IMAGES} photos uploaded as files, {SNIPPETS} pasted "
        f"snippets) from {given.source}; text queries; tiny random-weight models: scores "
        f"are meaningless, timings are real; {len(results)} rounds after {WARMUP} warm-up "
        f"requests per side, who goes first alternating; {args.threads} torch thread(s) per "
        f"process; Gradio's queue {'off' if args.no_queue else 'on'}; 1-minute load "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    print()
    print(f"{'':38} {'p50 ms':>8} {'p95 ms':>8}")
    print(row("UI: click -> results painted", [r.ui.painted_ms for r in results]))
    print(row("UI: click -> cards in the DOM", [r.ui.dom_ms for r in results]))
    print(row("  server: the page's Rerank callback", [r.callback_ms for r in results]))
    print(row("  server: its model work (explain_all)", [r.model_ms for r in results]))
    print(row("Pipeline.rerank in this process", [r.pipeline_ms for r in results]))
    print()
    diffs = [r.ui.painted_ms - r.pipeline_ms for r in results]
    print("medians over the rounds of each round's difference, ms (min .. max):")
    for name, values in [
        ("UI − Pipeline.rerank", diffs),
        ("browser + Gradio (UI − callback)", [r.ui.painted_ms - r.callback_ms for r in results]),
        ("page's Python (callback − model)", [r.callback_ms - r.model_ms for r in results]),
        ("model, server − here", [r.model_ms - r.pipeline_ms for r in results]),
    ]:
        spread = f"({min(values):.1f} .. {max(values):.1f})"
        print(f"  {name:36} {statistics.median(values):7.1f}  {spread}")
    print()
    agree = sum(r.max_diff <= 1e-4 for r in results)
    print(
        f"scores: the page's {'equal' if agree == len(results) else 'DIFFER FROM'} "
        f"Pipeline.rerank's in {agree}/{len(results)} rounds (allclose, atol 1e-4: the cards "
        f"show 4 decimals; largest difference {max(r.max_diff for r in results):.2g})"
    )
    added = statistics.median(diffs)
    print(
        f"{'PASS' if added <= GOAL_MS else 'FAIL'}: the UI adds {added:.1f} ms from click to "
        f"rendered results (median of {len(results)} rounds' UI − Pipeline.rerank; goal <= "
        f"{GOAL_MS:g} ms)"
    )
    return agree == len(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="images/ and captions.txt")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds")
    parser.add_argument("--quick", action="store_true", help="3 rounds (a smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, per process")
    parser.add_argument("--no-queue", action="store_true", help="`vlsearch ui --no-queue`")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # not the tiny profile's warning
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        raise SystemExit(f"no chromium at {CHROMIUM}: run `make browser`")
    given = inputs(args.data, WARMUP + (3 if args.quick else args.rounds))
    torch.set_num_threads(args.threads)
    pipeline = Pipeline(validate_config({"profile": "tiny"}))

    def load_here() -> None:
        pipeline.load_reranker()
        gc.collect()
        gc.freeze()  # as the server does after a load: no full collection of the models

    with (
        tempfile.TemporaryDirectory(prefix="vlsearch-bench-ui-") as scratch,
        page_server(Path(scratch), args.threads, not args.no_queue, load_here) as base,
        sync_playwright() as driver,
    ):
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = open_page(browser, base, given)
        results = timed_rounds(page, pipeline, given, ServerTimings(Path(scratch) / "timings"))
        browser.close()
    if not report(results, given, args):
        raise SystemExit("the page scored differently from Pipeline.rerank: not the same work")


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD]:
        timed_vlsearch(sys.argv[2:])
    else:
        main()
