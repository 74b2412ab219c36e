"""``report.md`` and ``report.html`` from an :class:`EvalReport`.

Both are rendered from one list of blocks (headings, paragraphs, tables, images), so
they always say the same thing. The HTML page is self-contained: its style is inline
and its PNG plots are embedded as base64 data, so it can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.evaluation.inputs import PROBLEM_TITLES
from pipeline.evaluation.metrics import Comparison
from pipeline.evaluation.results import EvalReport, SystemSummary
from pipeline.evaluation.suite import metric_label

STAGES = {
    "embed_s": "embed",
    "recall_s": "recall",
    "fusion_s": "fusion",
    "rerank_s": "rerank",
    "total_s": "total",
}
_EXAMPLES_PER_KIND = 20
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
.notice { background: #fff3cd; border: 1px solid #e0c36b; padding: 0.6rem 1rem; }
img { max-width: 100%; display: block; margin: 0.5rem 0 1.5rem; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Notice:
    text: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Picture:
    path: str  # relative to the report's folder
    caption: str


@dataclass(frozen=True)
class Items:
    items: Sequence[str]


Block = Heading | Paragraph | Notice | Table | Picture | Items


def write_reports(out: Path, report: EvalReport) -> dict[str, str]:
    from indexers.atomic import atomic_write_text

    blocks = report_blocks(report)
    atomic_write_text(out / "report.md", to_markdown(blocks))
    atomic_write_text(out / "report.html", to_html(blocks, out, f"Evaluation: {report.suite}"))
    return {"report_md": "report.md", "report_html": "report.html"}


def report_blocks(report: EvalReport) -> list[Block]:
    blocks: list[Block] = [Heading(f"Evaluation: {Path(report.suite).name}", 1)]
    if report.warning:
        blocks.append(Notice(report.warning))
    blocks += _overview(report)
    blocks += _means(report)
    for metric in report.metrics:
        blocks += _against_baseline(report, metric)
    blocks += _latency(report)
    blocks += _differences(report)
    blocks += _sweeps(report)
    blocks += _problems(report)
    return blocks


def _overview(report: EvalReport) -> list[Block]:
    excluded = (
        f"{report.unjudged} without judgements, neither run nor measured"
        if report.unjudged
        else "none without judgements"
    )
    cache = f"`{report.cache}`" if report.cache else "off (`--no-cache`)"
    return [
        Paragraph(
            f"Index `{report.index}`; queries `{report.queries_file}` ({report.queries} "
            f"queries: {report.judged} judged, {excluded}); judgements `{report.qrels_file}`; "
            f"suite `{report.suite}`. Runs keep {report.depth} results per query. Baseline: "
            f"**{report.baseline}**."
        ),
        Paragraph(
            "Metrics by ranx, per query, averaged over the judged queries. nDCG uses linear "
            "gain (gain = grade, as trec_eval's ndcg_cut; ranx `ndcg`); binary metrics count "
            "grade >= 1 as relevant unless the metric says `-lN`. p values: paired t-test "
            "(ranx, two-sided) and paired randomisation test (scipy, "
            f"{report.permutations} resamples, seed {report.seed}, two-sided), each "
            "Holm-corrected across the systems compared with the baseline, per metric and "
            "test. W/T/L: queries where the system beats, ties or loses to the baseline."
        ),
        Paragraph(f"Reranker score cache: {cache}."),
    ]


def _means(report: EvalReport) -> list[Block]:
    header = ["system", "kind", *(metric_label(m) for m in report.metrics), "results/query"]
    rows = [
        [
            _system_name(s, report),
            s.kind,
            *(_number(s.means[m]) for m in report.metrics),
            f"{s.mean_results:.1f}",
        ]
        for s in report.systems
    ]
    described = [f"**{s.name}**: {s.description}" for s in report.systems]
    return [Heading("Systems"), Table(header, rows), Items(described)]


def _against_baseline(report: EvalReport, metric: str) -> list[Block]:
    rows_of = [row for row in report.comparisons if row.metric == metric]
    if not rows_of:
        return []
    base = report.system(report.baseline).means[metric]
    header = ["system", metric_label(metric), "Δ", "p t-test (Holm)", "p random (Holm)", "W/T/L"]
    rows = [[f"{report.baseline} (baseline)", _number(base), "", "", "", ""]]
    rows += [_comparison_row(row) for row in rows_of]
    return [Heading(f"{metric_label(metric)} against {report.baseline}", 3), Table(header, rows)]


def _comparison_row(row: Comparison) -> list[str]:
    return [
        row.system,
        _number(row.value),
        f"{row.difference:+.4f}",
        _p(row.p_t, row.p_t_holm),
        _p(row.p_random, row.p_random_holm),
        f"{row.wins}/{row.ties}/{row.losses}",
    ]


def _latency(report: EvalReport) -> list[Block]:
    timed = [s for s in report.systems if s.latency]
    if not timed:
        return []
    header = ["system", *(f"{label} p50 / p95 (ms)" for label in STAGES.values())]
    rows = []
    for summary in timed:
        cells = []
        for stage in STAGES:
            found = summary.latency.get(stage)
            cells.append(f"{found.p50 * 1e3:.1f} / {found.p95 * 1e3:.1f}" if found else "—")
        rows.append([summary.name, *cells])
    blocks: list[Block] = [Heading("Latency per query"), Table(header, rows)]
    cached = [s for s in timed if s.cached_pairs]
    if cached:
        shares = ", ".join(f"{s.name} {s.cached_pairs} of {s.rerank_pairs} pairs" for s in cached)
        blocks.append(
            Paragraph(
                f"Rerank times include pairs served from the score cache ({shares}); run with "
                "`--no-cache` and a fresh `--out` to time the model on every pair."
            )
        )
    return blocks


def _differences(report: EvalReport) -> list[Block]:
    if not report.difference_plots:
        return []
    label = metric_label(report.primary_metric)
    blocks: list[Block] = [Heading(f"Per-query Δ {label} against {report.baseline}")]
    for name, path in report.difference_plots.items():
        blocks.append(Picture(path, f"{name}: per-query Δ {label}, sorted"))
    return blocks


def _sweeps(report: EvalReport) -> list[Block]:
    if not report.sweeps:
        return []
    blocks: list[Block] = [Heading("Metrics against rerank.top_n")]
    for sweep in report.sweeps:
        header = ["rerank.top_n", "system", *(metric_label(m) for m in report.metrics)]
        rows = [
            [str(top_n), name, *(_number(report.system(name).means[m]) for m in report.metrics)]
            for top_n, name in zip(sweep.top_n, sweep.systems, strict=True)
        ]
        blocks.append(Table(header, rows))
        if sweep.plot:
            blocks.append(Picture(sweep.plot, f"metrics against rerank.top_n: {sweep.systems}"))
    return blocks


def _problems(report: EvalReport) -> list[Block]:
    blocks: list[Block] = [Heading("Input problems")]
    if not report.problems:
        return [*blocks, Paragraph("None: every line of every input was used.")]
    rows = [[PROBLEM_TITLES[kind], str(count)] for kind, count in report.problem_counts.items()]
    blocks += [Table(["problem", "count"], rows)]
    for kind in report.problem_counts:
        found = [p for p in report.problems if p.kind == kind]
        shown = [str(p) for p in found[:_EXAMPLES_PER_KIND]]
        if len(found) > _EXAMPLES_PER_KIND:
            shown.append(f"… and {len(found) - _EXAMPLES_PER_KIND} more in problems.jsonl")
        blocks += [Paragraph(f"**{PROBLEM_TITLES[kind]}**"), Items(shown)]
    return blocks


def _system_name(summary: SystemSummary, report: EvalReport) -> str:
    return f"{summary.name} (baseline)" if summary.name == report.baseline else summary.name


def _number(value: float) -> str:
    return f"{value:.4f}"


def _p(raw: float | None, corrected: float | None) -> str:
    if raw is None:
        return "—"  # a t-test of differences that never vary has no p
    return f"{raw:.4f} ({corrected:.4f})" if corrected is not None else f"{raw:.4f}"


# -- rendering ----------------------------------------------------------------------------


def to_markdown(blocks: Sequence[Block]) -> str:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Notice):
            parts.append(f"> **Warning:** {block.text}")
        elif isinstance(block, Table):
            lines = [_md_row(block.header), _md_row(["---"] * len(block.header))]
            lines += [_md_row(row) for row in block.rows]
            parts.append("\n".join(lines))
        elif isinstance(block, Picture):
            parts.append(f"![{block.caption}]({block.path})")
        else:
            parts.append("\n".join(f"- {item}" for item in block.items))
    return "\n\n".join(parts) + "\n"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def to_html(blocks: Sequence[Block], folder: Path, title: str) -> str:
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Notice):
            body.append(f'<p class="notice"><strong>Warning:</strong> {_inline(block.text)}</p>')
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(cell)}</th>" for cell in block.header)
            rows = "".join(
                "<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>"
                for row in block.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Picture):
            data = base64.b64encode((folder / block.path).read_bytes()).decode("ascii")
            alt = html.escape(block.caption)
            body.append(f'<img alt="{alt}" src="data:image/png;base64,{data}">')
        else:
            items = "".join(f"<li>{_inline(item)}</li>" for item in block.items)
            body.append(f"<ul>{items}</ul>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _inline(text: str) -> str:
    """Escaped HTML with the Markdown the blocks use: **bold** and `code`."""
    out, bold, code = [], False, False
    i = 0
    while i < len(text):
        if text.startswith("**", i) and not code:
            out.append("</strong>" if bold else "<strong>")
            bold = not bold
            i += 2
        elif text[i] == "`":
            out.append("</code>" if code else "<code>")
            code = not code
            i += 1
        else:
            out.append(html.escape(text[i]))
            i += 1
    return "".join(out)
