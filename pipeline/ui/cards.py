"""Result cards as HTML: what the page shows of a search or a rerank, best first.

Everything that came from a user or an index (ids, text, metadata, file names) is
escaped, so an asset cannot inject markup into the page. A best-moment link carries its
second in ``data-t``; the page's script (``SEEK_SCRIPT``) seeks the card's player there.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline.api.schemas import SearchResult
from pipeline.schema import Asset
from pipeline.ui.uploads import Candidate, UploadInfo
from rerankers.breakdown import Breakdown

TEXT_EXCERPT_CHARS = 400
TINY_NOTICE = (
    "**Tiny random-weight models** (`VLSEARCH_MODELS=tiny`): rankings and scores are "
    "meaningless. They show only that the machinery runs; timings are real."
)
PARTS_NOTE = (
    "Each part scored alone by the same model, beside the whole document's score. These "
    "are separate judgements, not a split of the whole score."
)
FRAMES_NOTE = (
    "Each sampled frame scored alone as an image by the same model (one pass per frame); "
    "the best is the moment shown. The whole video's score is a separate judgement."
)

SEEK_SCRIPT = """
element.addEventListener('click', (event) => {
  const link = event.target.closest('a.vls-seek');
  if (!link) return;
  event.preventDefault();
  const card = link.closest('.vls-card');
  const player = card && card.querySelector('video.vls-player');
  if (!player) return;
  const seconds = parseFloat(link.dataset.t);
  const seek = () => { player.currentTime = seconds; player.play().catch(() => {}); };
  if (player.readyState >= 1) { seek(); }
  else { player.addEventListener('loadedmetadata', seek, { once: true }); player.load(); }
});
"""

CSS = """
.vls-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr));
  gap: 12px; }
.vls-card { border: 1px solid var(--border-color-primary); border-radius: 8px;
  padding: 10px; background: var(--background-fill-secondary); }
.vls-card.vls-failed { opacity: 0.75; border-style: dashed; }
.vls-media img, .vls-media video { width: 100%; max-height: 220px; object-fit: contain;
  background: #111; border-radius: 4px; }
.vls-text { font-size: 0.9em; max-height: 160px; overflow: auto; white-space: pre-wrap; }
.vls-badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 0.8em;
  font-weight: 600; color: #fff; background: #555; }
.vls-badge-text { background: #2563eb; } .vls-badge-image { background: #16a34a; }
.vls-badge-video { background: #c026d3; } .vls-badge-pdf { background: #ea580c; }
.vls-badge-unreadable { background: #b91c1c; }
.vls-score { font-size: 1.2em; font-weight: 700; margin-left: 6px; }
.vls-stages { width: 100%; font-size: 0.85em; margin-top: 6px; }
.vls-stages td { padding: 1px 4px; }
.vls-id, .vls-info { font-size: 0.8em; color: var(--body-text-color-subdued);
  word-break: break-all; }
.vls-error { color: #b91c1c; font-size: 0.9em; }
.vls-seek, .vls-page { font-weight: 600; cursor: pointer; }
.vls-note { font-size: 0.8em; font-style: italic; }
.vls-uploads .vls-info { font-size: 0.9em; color: inherit; }
"""

# Images decode off the frame that paints the cards, and only once scrolled near.
_LAZY = 'loading="lazy" decoding="async"'
Url = Callable[[str], str]
"""Makes a page-relative or absolute URL from an API path (signing it when tokens are set)."""


# -- search ------------------------------------------------------------------------------


def search_cards(results: Sequence[SearchResult], assets: Mapping[str, Asset], url: Url) -> str:
    if not results:
        return '<p class="vls-empty">No results.</p>'
    cards = [_search_card(result, assets.get(result.id), url) for result in results]
    return f'<div class="vls-cards">{"".join(cards)}</div>'


def _search_card(result: SearchResult, asset: Asset | None, url: Url) -> str:
    badge = "PDF page" if result.page is not None else (result.modality or "text")
    media = _search_media(result, asset, url)
    links = ""
    if result.best_timestamp is not None and result.modality == "video":
        links = _seek_link(result.best_timestamp, "best moment")
    if result.page is not None and result.media_url:
        links += (
            f'<a class="vls-page" href="{_e(url(result.media_url))}" target="_blank" '
            f'rel="noopener">page {result.page} ↗</a>'
        )
    return (
        f'<div class="vls-card" data-id="{_e(result.id)}">'
        f'<div class="vls-media">{media}</div>'
        f'<div>{_badge(badge)}<span class="vls-rank"> #{result.rank}</span>'
        f'<span class="vls-score">{_score(result.score)}</span></div>'
        f"<div>{links}</div>"
        f"{_stage_table(result)}"
        f'<div class="vls-id">{_e(result.id)}</div>'
        f"{_metadata(result.metadata)}</div>"
    )


def _search_media(result: SearchResult, asset: Asset | None, url: Url) -> str:
    text = asset.text if asset is not None else None
    if result.modality == "video" and result.media_url:
        media = url(result.media_url.split("#", 1)[0])
        poster = f' poster="{_e(url(result.thumbnail_url))}"' if result.thumbnail_url else ""
        return (
            f'<video class="vls-player" controls preload="metadata" src="{_e(media)}"'
            f"{poster}></video>"
        )
    if result.thumbnail_url:
        image = f'<img src="{_e(url(result.thumbnail_url))}" alt="{_e(result.id)}" {_LAZY}>'
        return image + (_text_block(text) if result.page is not None and text else "")
    return _text_block(text) if text else ""


def _stage_table(result: SearchResult) -> str:
    rows = [
        (f"recall · {channel}", stage.score, stage.rank) for channel, stage in result.recall.items()
    ]
    rows.append(("fused", result.fused.score, result.fused.rank))
    if result.rerank is not None:
        rows.append(("rerank", result.rerank.score, result.rerank.rank))
    cells = "".join(
        f"<tr><td>{_e(name)}</td><td>{_score(score)}</td><td>#{rank}</td></tr>"
        for name, score, rank in rows
    )
    error = (
        f'<div class="vls-error">rerank: {_e(result.rerank_error)}</div>'
        if result.rerank_error
        else ""
    )
    return f'<table class="vls-stages">{cells}</table>{error}'


# -- rerank ------------------------------------------------------------------------------


def rerank_cards(
    ranked: Sequence[tuple[Candidate, Breakdown | None]], file_url: Callable[[Any], str]
) -> str:
    """``ranked`` best first, unreadable candidates last; ``file_url`` serves a local file."""
    cards = [
        _rerank_card(rank, candidate, breakdown, file_url)
        for rank, (candidate, breakdown) in enumerate(ranked, 1)
    ]
    return f'<div class="vls-cards">{"".join(cards)}</div>'


def _rerank_card(
    rank: int, candidate: Candidate, breakdown: Breakdown | None, file_url: Callable[[Any], str]
) -> str:
    whole = breakdown.whole if breakdown is not None else None
    error = candidate.error or (breakdown.whole_error if breakdown is not None else None)
    failed = whole is None
    header = (
        f"<div>{_badge('unreadable' if failed else candidate.badge)}"
        f'<span class="vls-rank"> #{rank}</span>'
        + ("" if failed else f'<span class="vls-score">{_score(whole)}</span>')
        + "</div>"
    )
    body = f'<div class="vls-error">{_e(error)}</div>' if failed and error else ""
    details = _breakdown(breakdown) if breakdown is not None and not failed else ""
    classes = "vls-card vls-failed" if failed else "vls-card"
    return (
        f'<div class="{classes}" data-label="{_e(candidate.label)}">'
        f'<div class="vls-media">{_candidate_media(candidate, file_url)}</div>'
        f'{header}<div class="vls-id">{_e(candidate.label)}</div>{body}'
        f"{upload_line(candidate.upload)}{details}</div>"
    )


def _candidate_media(candidate: Candidate, file_url: Callable[[Any], str]) -> str:
    content = candidate.content
    if candidate.media is not None and candidate.badge == "video":
        return (
            f'<video class="vls-player" controls preload="metadata" '
            f'src="{_e(file_url(candidate.media))}"></video>'
        )
    media = ""
    if candidate.media is not None:
        media = f'<img src="{_e(file_url(candidate.media))}" alt="{_e(candidate.label)}" {_LAZY}>'
    if content is not None and content.text:
        media += _text_block(content.text)
    return media


def _breakdown(breakdown: Breakdown) -> str:
    sections = []
    if breakdown.parts:
        rows = "".join(
            f"<tr><td>{_e(part.part)} alone</td><td>{_score(part.score)}</td>"
            f"<td>{_e(part.error or '')}</td></tr>"
            for part in breakdown.parts
        )
        whole = _score(breakdown.whole)
        rows += f"<tr><td><b>whole document</b></td><td><b>{whole}</b></td><td></td></tr>"
        sections.append(
            f'<p class="vls-note">{PARTS_NOTE}</p><table class="vls-stages">{rows}</table>'
        )
    if breakdown.frames:
        best = breakdown.best_moment
        head = (
            f"<p>Best moment: {_seek_link(best.timestamp, 'play')} frame score "
            f"{_score(best.score)}</p>"
            if best is not None
            else ""
        )
        rows = "".join(
            f"<tr><td>{_seek_link(frame.timestamp, '')}</td><td>{_score(frame.score)}</td>"
            f"<td>{_e(frame.error or '')}</td></tr>"
            for frame in breakdown.frames
        )
        sections.append(
            f'<p class="vls-note">{FRAMES_NOTE}</p>{head}<table class="vls-stages">{rows}</table>'
        )
    if not sections:
        return ""
    return (
        f'<details class="vls-breakdown"><summary>Breakdown</summary>{"".join(sections)}</details>'
    )


# -- uploads -----------------------------------------------------------------------------


def upload_line(info: UploadInfo | None) -> str:
    if info is None:
        return ""
    facts = [info.kind, _bytes(info.size_bytes)]
    if info.width is not None and info.height is not None:
        unit = " pt" if info.kind == "pdf" else " px"
        facts.append(f"{info.width}×{info.height}{unit}")
    if info.aspect:
        facts.append(f"aspect {info.aspect}")
    if info.duration_s is not None:
        facts.append(f"{info.duration_s:.1f} s")
    if info.pages is not None:
        facts.append(f"{info.pages} page{'s' if info.pages != 1 else ''}")
    problem = f' · <span class="vls-error">{_e(info.problem)}</span>' if info.problem else ""
    return f'<div class="vls-info">{_e(" · ".join(facts))}{problem}</div>'


def uploads_table(infos: Sequence[UploadInfo]) -> str:
    if not infos:
        return ""
    rows = "".join(f"<tr><td>{_e(i.name)}</td><td>{upload_line(i)}</td></tr>" for i in infos)
    head = "<tr><th>file</th><th>what it is</th></tr>"
    return f'<table class="vls-stages vls-uploads">{head}{rows}</table>'


# -- pieces ------------------------------------------------------------------------------


def _badge(kind: str) -> str:
    css = {"PDF page": "pdf"}.get(kind, kind)
    return f'<span class="vls-badge vls-badge-{_e(css)}">{_e(kind)}</span>'


def _seek_link(seconds: float, label: str) -> str:
    text = f"▶ {label} {clock(seconds)}".replace("  ", " ").strip()
    return f'<a class="vls-seek" href="#" data-t="{seconds:.3f}">{_e(text)}</a>'


def clock(seconds: float) -> str:
    """``1:05.5``: minutes and seconds (tenths when not whole)."""
    # Rounded to tenths first: 59.96 s is 1:00, not 0:60.0.
    minutes, rest = divmod(round(max(seconds, 0.0), 1), 60)
    shown = f"{rest:04.1f}" if round(rest, 1) != int(rest) else f"{int(rest):02d}"
    return f"{int(minutes)}:{shown}"


def _score(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.4f}"


def _text_block(text: str) -> str:
    shown = text if len(text) <= TEXT_EXCERPT_CHARS else text[:TEXT_EXCERPT_CHARS] + "…"
    return f'<div class="vls-text">{_e(shown)}</div>'


def _metadata(metadata: Mapping[str, Any]) -> str:
    if not metadata:
        return ""
    shown = json.dumps(metadata, ensure_ascii=False, indent=1, default=str)
    return f"<details><summary>metadata</summary><pre>{_e(shown)}</pre></details>"


def _bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
