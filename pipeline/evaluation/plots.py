"""The report's plots, as PNG files (matplotlib's Figure API: the Agg renderer, no
pyplot state, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.evaluation.errors import EvalError
from pipeline.evaluation.suite import metric_label

_TINY = "tiny models: rankings are meaningless"


def difference_plot(
    path: Path,
    system: str,
    baseline: str,
    metric: str,
    differences: Sequence[float],
    tiny: bool,
) -> None:
    """Per-query ``system - baseline`` on ``metric``, sorted, one bar per query."""
    figure = _figure()
    axes = figure.add_subplot()
    values = sorted(differences, reverse=True)
    colours = ["#2a7f3f" if v > 0 else "#b23a3a" if v < 0 else "#888888" for v in values]
    axes.bar(range(len(values)), values, width=1.0, color=colours)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xlabel("queries, sorted by difference")
    axes.set_ylabel(f"Δ {metric_label(metric)}")
    wins = sum(v > 0 for v in values)
    losses = sum(v < 0 for v in values)
    ties = len(values) - wins - losses
    title = f"{system} − {baseline}: {wins} better, {losses} worse, {ties} tied"
    axes.set_title(_titled(title, tiny), fontsize=10)
    axes.set_xlim(-0.5, max(len(values), 1) - 0.5)
    _save(figure, path)


def sweep_plot(
    path: Path,
    systems: Sequence[str],
    top_n: Sequence[int],
    means: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str],
    tiny: bool,
) -> None:
    """Each metric's mean against rerank.top_n."""
    figure = _figure()
    axes = figure.add_subplot()
    for metric in metrics:
        values = [means[name][metric] for name in systems]
        axes.plot(top_n, values, marker="o", label=metric_label(metric))
    axes.set_xlabel("rerank.top_n (candidates reranked)")
    axes.set_ylabel("mean over judged queries")
    axes.set_xticks(list(top_n))
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    axes.set_title(_titled(f"{', '.join(systems)}", tiny), fontsize=10)
    _save(figure, path)


def _figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise EvalError("vlsearch eval's plots need matplotlib: pip install -e '.[eval]'") from None
    return Figure(figsize=(7.0, 3.6), dpi=100, layout="constrained")


def _titled(title: str, tiny: bool) -> str:
    return f"{title}\n({_TINY})" if tiny else title


def _save(figure: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # No software or date stamp: the same numbers give the same file.
    figure.savefig(path, format="png", metadata={"Software": None})
