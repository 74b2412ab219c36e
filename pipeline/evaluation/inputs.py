"""The files an evaluation reads: queries, judgements (qrels) and TREC runs.

Every reader keeps going past a bad line: the line is reported (file and line number) as
an :class:`InputProblem` and the rest is used, so one stray line in a 40,000-line qrels
file never costs a night's run. The accepted layouts:

* queries: JSONL rows with ``id`` (BEIR's ``_id`` too) and ``text``, ``image`` and/or
  ``video`` (media paths relative to the file), or TSV lines ``id<TAB>text``;
* qrels: TREC ``qid 0 docid grade`` (graded), or BEIR's 3-column ``qrels.tsv``
  (``query-id corpus-id score``, its header line optional);
* runs: TREC's six columns ``qid Q0 docid rank score tag``.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.schema import Query

logger = logging.getLogger(__name__)

ProblemKind = Literal[
    "unparsable_line",
    "duplicate",
    "missing_media",
    "unjudged_query",
    "unknown_query",
    "no_relevant_judgement",
    "judged_document_not_in_index",
    "run_document_not_in_index",
    "query_failed",
]
PROBLEM_TITLES: dict[str, str] = {
    "unparsable_line": "lines that do not parse (skipped)",
    "duplicate": "repeated entries (the first is kept)",
    "missing_media": "queries whose media file is missing (skipped)",
    "unjudged_query": "queries without judgements (not run, excluded from metrics)",
    "unknown_query": "query ids that the queries file does not hold (skipped)",
    "no_relevant_judgement": "judged queries with no relevant document (every metric is 0)",
    "judged_document_not_in_index": "judged documents missing from the index",
    "run_document_not_in_index": "run entries naming documents the index does not hold",
    "query_failed": "searches that failed (the query counts with no results)",
}
# Warnings logged per kind and file; the report and problems.jsonl list every one.
_LOGGED_PER_KIND = 10
BEIR_HEADER = ("query-id", "corpus-id", "score")

Qrels = dict[str, dict[str, int]]
"""qid -> docid -> grade."""
Ranking = list[tuple[str, float]]
"""(docid, score), best first."""


class InputProblem(BaseModel):
    kind: ProblemKind
    file: str
    line: int | None = None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


class Problems:
    """Collects problems; logs the first few of each kind and file as warnings, and a
    count of the rest when asked."""

    def __init__(self) -> None:
        self.items: list[InputProblem] = []
        self._logged: Counter[tuple[str, str]] = Counter()

    def add(self, kind: ProblemKind, file: Path | str, line: int | None, message: str) -> None:
        problem = InputProblem(kind=kind, file=str(file), line=line, message=message)
        self.items.append(problem)
        key = (kind, problem.file)
        self._logged[key] += 1
        if self._logged[key] <= _LOGGED_PER_KIND:
            logger.warning("%s", problem)

    def log_unlogged(self) -> None:
        for (kind, file), count in self._logged.items():
            if count > _LOGGED_PER_KIND:
                logger.warning(
                    "%s: %d more %s (every one is listed in the report)",
                    file,
                    count - _LOGGED_PER_KIND,
                    PROBLEM_TITLES[kind],
                )

    def counts(self) -> dict[str, int]:
        return dict(Counter(problem.kind for problem in self.items))


class EvalQuery(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    query: Query
    line: int


class RunFile(BaseModel):
    """A TREC run as read: each query's documents best first (score descending, then the
    file's rank column, then line order), and the line each entry came from."""

    path: Path
    rankings: dict[str, Ranking]
    lines: dict[tuple[str, str], int]


# -- queries ------------------------------------------------------------------------------


def read_queries(path: Path, problems: Problems) -> dict[str, EvalQuery]:
    """Queries by id in file order; JSONL when the first non-blank line is an object."""
    lines = _lines(path)
    first = next((text for _, text in lines if text.strip()), "")
    read = _jsonl_query if first.lstrip().startswith("{") else _tsv_query
    queries: dict[str, EvalQuery] = {}
    for number, text in lines:
        if not text.strip():
            continue
        query = read(text, number, path, problems)
        if query is None:
            continue
        if query.id in queries:
            first = queries[query.id].line
            problems.add("duplicate", path, number, f"query {query.id!r} again (line {first})")
            continue
        queries[query.id] = query
    return queries


def _jsonl_query(text: str, number: int, path: Path, problems: Problems) -> EvalQuery | None:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.add("unparsable_line", path, number, f"not JSON ({exc.msg})")
        return None
    if not isinstance(row, dict):
        problems.add("unparsable_line", path, number, "a query line must be a JSON object")
        return None
    qid = row.get("id", row.get("_id"))
    if qid in (None, ""):
        problems.add("unparsable_line", path, number, "no 'id' (or '_id')")
        return None
    fields: dict[str, object] = {}
    if isinstance(row.get("text"), str):
        fields["text"] = row["text"]
    for name in ("image", "video"):
        value = row.get(name)
        if value in (None, ""):
            continue
        media = _resolve(path.parent, str(value))
        if not media.is_file():
            problems.add("missing_media", path, number, f"query {qid!r}: no {name} file {media}")
            return None
        fields[name] = media
    try:
        query = Query.model_validate(fields)
    except ValidationError as exc:
        problems.add("unparsable_line", path, number, f"query {qid!r}: {exc.errors()[0]['msg']}")
        return None
    if query.is_empty:
        problems.add("unparsable_line", path, number, f"query {qid!r} has no text, image or video")
        return None
    return EvalQuery(id=str(qid), query=query, line=number)


def _tsv_query(text: str, number: int, path: Path, problems: Problems) -> EvalQuery | None:
    qid, tab, question = text.partition("\t")
    if not tab or not qid.strip() or not question.strip():
        problems.add("unparsable_line", path, number, "expected 'id<TAB>text'")
        return None
    return EvalQuery(id=qid.strip(), query=Query(text=question.strip()), line=number)


# -- judgements ---------------------------------------------------------------------------


class Judgements(BaseModel):
    qrels: Qrels
    lines: dict[tuple[str, str], int]


def read_qrels(path: Path, problems: Problems) -> Judgements:
    """TREC 4-column or BEIR 3-column judgements; grades are integers (``2`` or ``2.0``)."""
    qrels: Qrels = {}
    lines: dict[tuple[str, str], int] = {}
    for number, text in _lines(path):
        fields = text.split()
        if not fields:
            continue
        if len(fields) == 3 and number == 1 and tuple(f.lower() for f in fields) == BEIR_HEADER:
            continue
        if len(fields) == 4:
            qid, _, docid, grade_text = fields
        elif len(fields) == 3:
            qid, docid, grade_text = fields
        else:
            message = (
                "expected 'qid 0 docid grade' (TREC) or 'qid docid grade' (BEIR), "
                f"got {len(fields)} fields"
            )
            problems.add("unparsable_line", path, number, message)
            continue
        grade = _integer(grade_text)
        if grade is None:
            problems.add("unparsable_line", path, number, f"grade {grade_text!r} is not an integer")
            continue
        if (qid, docid) in lines:
            first = lines[(qid, docid)]
            problems.add(
                "duplicate", path, number, f"{qid} {docid} judged again (first on line {first})"
            )
            continue
        qrels.setdefault(qid, {})[docid] = grade
        lines[(qid, docid)] = number
    return Judgements(qrels=qrels, lines=lines)


def _integer(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value == int(value) else None


# -- runs ---------------------------------------------------------------------------------


def read_run(path: Path, problems: Problems) -> RunFile:
    """A TREC run. Evaluators order a run by score, not by its rank column, and so does
    this (ties: rank column, then line order)."""
    entries: dict[str, list[tuple[float, int, int, str]]] = {}
    lines: dict[tuple[str, str], int] = {}
    for number, text in _lines(path):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 6:
            message = f"expected 'qid Q0 docid rank score tag', got {len(fields)} fields"
            problems.add("unparsable_line", path, number, message)
            continue
        qid, _, docid, rank_text, score_text, _tag = fields
        try:
            rank, score = int(rank_text), float(score_text)
        except ValueError:
            message = f"rank {rank_text!r} or score {score_text!r} is not a number"
            problems.add("unparsable_line", path, number, message)
            continue
        if not math.isfinite(score):
            problems.add("unparsable_line", path, number, f"score {score_text!r} is not finite")
            continue
        if (qid, docid) in lines:
            first = lines[(qid, docid)]
            problems.add(
                "duplicate", path, number, f"{qid} {docid} listed again (first on line {first})"
            )
            continue
        entries.setdefault(qid, []).append((-score, rank, number, docid))
        lines[(qid, docid)] = number
    rankings = {
        qid: [(docid, -negated) for negated, _, _, docid in sorted(rows)]
        for qid, rows in entries.items()
    }
    return RunFile(path=path, rankings=rankings, lines=lines)


# -- checks across files ------------------------------------------------------------------


def check_judgements(
    judgements: Judgements,
    queries: dict[str, EvalQuery],
    in_index: set[str],
    qrels_path: Path,
    queries_path: Path,
    problems: Problems,
) -> list[str]:
    """The judged queries to run, in the queries file's order, with every mismatch
    between the files and the index reported."""
    first_line = _first_lines(judgements.lines)
    for qid, line in first_line.items():
        if qid not in queries:
            message = f"query {qid!r} is judged but not in {queries_path.name}"
            problems.add("unknown_query", qrels_path, line, message)
    for (qid, docid), line in judgements.lines.items():
        if qid in queries and docid not in in_index:
            message = f"{qid} {docid}: judged document not in the index"
            problems.add("judged_document_not_in_index", qrels_path, line, message)
    judged = []
    for qid, query in queries.items():
        grades = judgements.qrels.get(qid)
        if grades is None:
            message = f"query {qid!r} has no judgements"
            problems.add("unjudged_query", queries_path, query.line, message)
            continue
        if not any(grade > 0 for grade in grades.values()):
            message = f"query {qid!r}: no document is judged relevant"
            problems.add("no_relevant_judgement", qrels_path, first_line[qid], message)
        judged.append(qid)
    return judged


def check_run(
    run: RunFile,
    queries: Collection[str],
    judged: list[str],
    in_index: set[str],
    problems: Problems,
) -> dict[str, Ranking]:
    """The run's rankings of the judged queries, reporting the ids it names that the
    queries file or the index lacks (unknown documents stay in: they count as not
    relevant, as trec_eval counts them)."""
    wanted = set(judged)
    for qid, line in _first_lines(run.lines).items():
        if qid not in queries:
            message = f"query {qid!r} is not in the queries file"
            problems.add("unknown_query", run.path, line, message)
    for (qid, docid), line in run.lines.items():
        if qid in wanted and docid not in in_index:
            message = f"{qid} {docid}: not in the index"
            problems.add("run_document_not_in_index", run.path, line, message)
    return {qid: ranking for qid, ranking in run.rankings.items() if qid in wanted}


def _first_lines(lines: dict[tuple[str, str], int]) -> dict[str, int]:
    first: dict[str, int] = {}
    for (qid, _), line in lines.items():
        first[qid] = min(line, first.get(qid, line))
    return first


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        return [(number, line.rstrip("\r\n")) for number, line in enumerate(handle, 1)]


def _resolve(base: Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else base / candidate
