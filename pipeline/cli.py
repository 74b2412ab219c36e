"""The ``vlsearch`` command: a thin door onto ``Pipeline``; no search logic lives here."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table

app = typer.Typer(
    no_args_is_help=True, help="Two-stage multimodal search: CLIP recall, Qwen3-VL rerank."
)
index_app = typer.Typer(no_args_is_help=True, help="Build and maintain indexes.")
models_app = typer.Typer(no_args_is_help=True, help="Model sets.")
config_app = typer.Typer(no_args_is_help=True, help="Configuration.")
app.add_typer(index_app, name="index")
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")

out = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config key: --set index.kind=hnsw")
]
IndexOpt = Annotated[Path, typer.Option("--index", "-i", help="Index directory.")]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"vlsearch {version('vlsearch')}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
    )


@contextmanager
def user_errors() -> Iterator[None]:
    """Known failures become one red line and exit code 2, not a traceback."""
    from indexers.faiss_install import FaissInstallError
    from indexers.index import IndexError_
    from pipeline.config import ConfigError
    from pipeline.hub import ModelUnavailable
    from pipeline.media import MediaError

    try:
        yield
    except (
        ConfigError,
        IndexError_,
        MediaError,
        FaissInstallError,
        ModelUnavailable,
        FileNotFoundError,
        ValueError,
    ) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _pipeline(config: Path | None, overrides: list[str] | None) -> Any:
    from pipeline.pipeline import Pipeline

    return Pipeline.from_config(config, overrides or [])


@index_app.command("build")
def index_build(
    input: Annotated[Path, typer.Option("--input", help="Folder or JSONL/CSV manifest.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Index directory to create.")],
    config: ConfigOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted build.")] = False,
    set_: SetOpt = None,
) -> None:
    """Index a folder or manifest; bad items are listed in OUT/errors.jsonl."""
    from indexers.manifest import IndexExistsError

    with user_errors():
        pipeline = _pipeline(config, set_)
        try:
            _run_build(pipeline, input, out_dir, "resume" if resume else "create")
        except IndexExistsError as exc:
            raise IndexExistsError(
                f"{exc}. To add or replace assets: vlsearch index add --index {out_dir} "
                f"--input {input}; to finish an interrupted build: the same command with "
                "--resume"
            ) from None


@index_app.command("add")
def index_add(
    index: IndexOpt,
    input: Annotated[Path, typer.Option("--input", help="Folder or JSONL/CSV manifest.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Add or replace (upsert by id) assets in an existing index."""
    with user_errors():
        pipeline = _pipeline(config, set_)
        _run_build(pipeline, input, index, "upsert")


def _run_build(pipeline: Any, source: Path, out_dir: Path, mode: str) -> None:
    from indexers.sources import count_source

    total = count_source(source)
    pipeline.embedder  # noqa: B018  (loads it now: a load error then comes alone, not mid-bar)
    # The bar counts what the input lists: a PDF or Markdown file is one file however
    # many page or passage assets it gives (the summary counts those).
    unit = "files" if Path(source).is_dir() else "rows"
    columns = (
        TextColumn("[bold]indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    # Transient: a build that stops at once (an existing index, say) leaves its error
    # alone on screen; a finished one leaves the summary below, elapsed time included.
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("build", total=total, rate="")
        report = pipeline.build(source, out_dir, mode=mode, progress=_advance(bar, task))
    table = Table(title=f"index {out_dir}", show_header=False)
    for key in ("indexed", "failed", "skipped", "already_indexed", "vectors"):
        table.add_row(key, str(getattr(report, key)))
    table.add_row("items/s", f"{report.items_per_s:.1f}")
    table.add_row("seconds", f"{report.timings.total_s:.1f}")
    err.print(table)
    if report.failed:
        err.print(
            f"[yellow]{report.failed} item(s) failed: see {out_dir / 'errors.jsonl'}[/yellow]"
        )
        raise typer.Exit(1)


@contextmanager
def _scoring_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A transient bar on stderr: a spinner while models load and candidates are found,
    then documents scored out of the total."""
    columns = (
        SpinnerColumn(),
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def _advance(bar: Progress, task: Any) -> Callable[[int], None]:
    def advance(count: int) -> None:
        bar.advance(task, count)
        speed = bar.tasks[task].speed
        bar.update(task, rate=f"{speed:.1f} items/s" if speed else "")

    return advance


@index_app.command("delete")
def index_delete(
    index: IndexOpt,
    ids: Annotated[list[str], typer.Argument(help="Asset ids to delete.")],
) -> None:
    """Delete assets by id."""
    with user_errors():
        report = _pipeline(None, None).delete(index, ids)
    err.print(f"deleted {report.deleted} of {len(set(ids))} id(s)")
    if report.unknown:
        shown = ", ".join(repr(i) for i in report.unknown[:20])
        more = f" and {len(report.unknown) - 20} more" if len(report.unknown) > 20 else ""
        err.print(f"[yellow]not in the index: {shown}{more}[/yellow]", highlight=False)


@index_app.command("info")
def index_info(index: IndexOpt) -> None:
    """Show an index's manifest and counts."""
    with user_errors():
        with _pipeline(None, None).open_index(index) as opened:
            info = {
                "assets": len(opened),
                "vectors": opened.vector_count(),
                "manifest": opened.manifest.model_dump(mode="json"),
            }
        out.print_json(json.dumps(info))


@app.command("search")
def search(
    index: IndexOpt,
    text: Annotated[str | None, typer.Option("--text", help="Text query.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Image file query.")] = None,
    video: Annotated[Path | None, typer.Option("--video", help="Video file query.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1)] = 10,
    filter_: Annotated[
        str | None,
        typer.Option(
            "--filter", help="Metadata filter, e.g. 'category == \"toys\" and price < 50'."
        ),
    ] = None,
    rerank: Annotated[
        bool, typer.Option("--rerank/--no-rerank", help="Run stage two (as the config says).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Search an index with text, an image or a video: recall, fusion, rerank."""
    from pipeline.schema import Query

    if sum(x is not None for x in (text, image, video)) != 1:
        err.print("[red]error:[/red] give exactly one of --text, --image, --video")
        raise typer.Exit(2)
    with user_errors(), _scoring_progress("searching") as progress:
        query = Query(text=text, image=image, video=video)
        hits = _pipeline(config, set_).search(
            index,
            query,
            top_k=top_k,
            filter=filter_,
            rerank=None if rerank else False,
            progress=progress,
        )
    if as_json:
        for hit in hits:
            out.print(hit.model_dump_json(), highlight=False, soft_wrap=True)
        return
    table = Table("#", Column("id", overflow="fold", min_width=12), "score", "fused", "rerank")
    table.add_column("kind")
    table.add_column("at")
    table.add_column("metadata", overflow="fold", ratio=1)
    for hit in hits:
        at = f"{hit.best_timestamp:.1f}s" if hit.best_timestamp is not None else ""
        at = f"p.{hit.page}" if hit.page is not None else at
        rerank_score = f"{hit.rerank.score:.4f}" if hit.rerank is not None else ""
        meta = json.dumps(hit.metadata, ensure_ascii=False, separators=(",", ":"))
        row = (str(hit.rank), hit.id, f"{hit.score:.4f}", f"{hit.fused.score:.4f}", rerank_score)
        table.add_row(*row, hit.modality or "", at, meta)
    out.print(table)


@app.command("serve")
def serve(
    index: Annotated[
        list[str],
        typer.Option(
            "--index",
            "-i",
            help="NAME=DIR of an index to serve (repeatable); a bare DIR is named 'default'.",
        ),
    ],
    index_config: Annotated[
        list[str] | None,
        typer.Option(
            "--index-config",
            help="NAME=CONFIG: a config of its own for index NAME (recall, fusion, rerank); "
            "the others use --config. --set applies to every config.",
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (serve.host).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (serve.port).")] = None,
    workers_per_stage: Annotated[
        int | None,
        typer.Option(
            "--workers-per-stage",
            min=1,
            help="Requests run at once in each model stage, embed and rerank "
            "(serve.max_concurrency).",
        ),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Serve indexes over HTTP: search, rerank (Jina/vLLM and Cohere APIs), upkeep."""
    from pipeline.api.server import parse_index_configs, parse_index_options
    from pipeline.api.server import serve as run_server
    from pipeline.config import load_config

    flags = {"serve.host": host, "serve.port": port, "serve.max_concurrency": workers_per_stage}
    overrides = [*(set_ or []), *(f"{k}={v}" for k, v in flags.items() if v is not None)]
    with user_errors():
        indexes = parse_index_options(index)
        pipeline = _pipeline(config, overrides)
        configs = {
            name: load_config(path, overrides)
            for name, path in parse_index_configs(index_config or [], indexes).items()
        }
        run_server(pipeline, indexes, configs)


@app.command("ui")
def ui(
    index: Annotated[
        list[str] | None,
        typer.Option(
            "--index",
            "-i",
            help="NAME=DIR of an index to search (repeatable); none: the Rerank tab only.",
        ),
    ] = None,
    index_config: Annotated[
        list[str] | None,
        typer.Option("--index-config", help="NAME=CONFIG: a config of its own for index NAME."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (ui.host).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (ui.port).")] = None,
    share: Annotated[
        bool, typer.Option(help="Ask Gradio's share service for a public link (needs a network).")
    ] = False,
    no_queue: Annotated[
        bool,
        typer.Option(
            "--no-queue", help="Answer events over plain HTTP, without Gradio's queue (ui.queue)."
        ),
    ] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """The web page: search an index and rerank uploads in the browser (Gradio)."""
    from pipeline.api.server import parse_index_configs, parse_index_options
    from pipeline.config import load_config
    from pipeline.ui.server import serve_page

    flags = {"ui.host": host, "ui.port": port, "ui.queue": False if no_queue else None}
    overrides = [*(set_ or []), *(f"{k}={v}" for k, v in flags.items() if v is not None)]
    with user_errors():
        indexes = parse_index_options(index or [], required=False)
        pipeline = _pipeline(config, overrides)
        configs = {
            name: load_config(path, overrides)
            for name, path in parse_index_configs(index_config or [], indexes).items()
        }
        serve_page(pipeline, indexes, configs, share=share)


@app.command("rerank")
def rerank(
    request: Annotated[Path, typer.Option("--request", "-r", help="Request JSON file.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Score a request's documents for its query with the configured reranker.

    The request is the reference script's JSON: {"instruction", "query", "documents",
    "fps"}; media paths are relative to the request file. Prints the scores in document
    order, the ranking and any documents that could not be read (score null)."""
    from rerankers.request import load_request

    with user_errors(), _scoring_progress("reranking") as progress:
        response = _pipeline(config, set_).rerank(load_request(request), progress=progress)
    out.print(response.model_dump_json(indent=2), highlight=False, soft_wrap=True)
    for failure in response.failures:
        err.print(f"[yellow]document {failure.index} not scored: {failure.reason}[/yellow]")


@app.command("eval")
def evaluate(
    index: IndexOpt,
    queries: Annotated[
        Path,
        typer.Option(
            "--queries", help="JSONL (id or _id; text, image, video) or TSV (id<TAB>text)."
        ),
    ],
    qrels: Annotated[
        Path,
        typer.Option("--qrels", help="TREC qrels (qid 0 docid grade) or BEIR's qrels.tsv."),
    ],
    suite: Annotated[
        Path, typer.Option("--suite", help="YAML: systems, baseline, metrics, depth, config.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the runs, metrics, plots and reports.")
    ],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an evaluation stopped in --out.")
    ] = False,
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache",
            help="Reranker score cache (SQLite); default: rerank-scores.sqlite in the user "
            "cache folder ($XDG_CACHE_HOME/vlsearch or ~/.cache/vlsearch).",
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Score every pair, read and keep no scores.")
    ] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Compare a suite's systems with its baseline on judged queries: TREC runs, metrics
    with paired tests, latency, plots, report.md and report.html in --out."""
    if cache is not None and no_cache:
        err.print("[red]error:[/red] give --cache or --no-cache, not both")
        raise typer.Exit(2)
    from pipeline.evaluation import run_eval

    with user_errors(), _eval_progress() as progress:
        report = run_eval(
            index,
            queries,
            qrels,
            suite,
            out_dir,
            resume=resume,
            cache=None if no_cache else (cache or "default"),
            config=config,
            overrides=set_ or [],
            progress=progress,
        )
    _print_eval(report)


@contextmanager
def _eval_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A bar per system, with its queries done, rate and ETA; kept on screen when done."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("queries"),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err) as bar:
        tasks: dict[str, Any] = {}

        def advance(system: str, done: int, total: int) -> None:
            if system not in tasks:
                # Queries already stored (--resume) start the bar: they are not speed.
                tasks[system] = bar.add_task(system, total=total, completed=done)
            else:
                bar.update(tasks[system], completed=done)

        yield advance


def _print_eval(report: Any) -> None:
    from pipeline.evaluation.suite import metric_label

    table = Table(title=f"against {report.baseline}", show_lines=False)
    table.add_column("system", overflow="fold")
    for metric in report.metrics:
        table.add_column(metric_label(metric), justify="right")
    differences = {(row.system, row.metric): row for row in report.comparisons}
    for summary in report.systems:
        cells = []
        for metric in report.metrics:
            row = differences.get((summary.name, metric))
            delta = f" ({row.difference:+.3f})" if row is not None else ""
            cells.append(f"{summary.means[metric]:.4f}{delta}")
        table.add_row(summary.name, *cells)
    out.print(table)
    problems = sum(report.problem_counts.values())
    if problems:
        err.print(f"[yellow]{problems} input problem(s): see the report's Input problems[/yellow]")
    if report.warning:
        err.print(f"[yellow]{report.warning}[/yellow]")
    err.print(f"report: {Path(report.out) / 'report.html'}", highlight=False)


@models_app.command("tiny")
def models_tiny(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the tiny model set.")],
) -> None:
    """Build the offline random-weight model set (rankings are meaningless)."""
    from pipeline.models import TINY_WARNING, build_tiny_models

    with user_errors():
        build_tiny_models(out_dir)
    folders = "clip/, qwen3-vl-reranker/, cross-encoder/"
    err.print(f"tiny models written to {out_dir}: {folders} ({TINY_WARNING})")


@config_app.command("show")
def config_show(
    path: Annotated[Path | None, typer.Argument(help="YAML config (defaults if omitted).")] = None,
    set_: SetOpt = None,
) -> None:
    """Print the resolved config."""
    from pipeline.config import load_config

    with user_errors():
        resolved = load_config(path, set_ or [])
    out.print(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False), highlight=False)


@config_app.command("defaults")
def config_defaults() -> None:
    """Print every setting with its default and meaning (configs/default.yaml)."""
    from pipeline.config_reference import render_defaults

    out.print(render_defaults(), end="", highlight=False, markup=False, soft_wrap=True)
