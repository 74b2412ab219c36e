"""Per-query results on disk as they are made: what lets a killed evaluation resume.

Each system's results are one JSON line per query in ``OUT/results/NAME.jsonl``, appended,
flushed and fsynced before the next query starts, so a kill at any moment loses at most
the query under way. Reading back drops a torn last line (a kill mid-write) and cuts it
off the file before anything is appended. ``OUT/state.json`` records what the results
were made from (inputs and each system's settings); ``--resume`` with anything else is
an error rather than a silent mix of two evaluations.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from indexers.atomic import atomic_write_text
from pipeline.evaluation.errors import EvalError

STATE_FILE = "state.json"
RESULTS_DIR = "results"
STATE_VERSION = 1


class QueryResult(BaseModel):
    """One query's ranking by one system, and what it cost."""

    # NaN scores (documents the reranker could not read) must survive the round trip.
    model_config = ConfigDict(ser_json_inf_nan="constants")

    qid: str
    results: list[tuple[str, float]] = Field(description="(docid, score), best first.")
    timings: dict[str, float] | None = Field(
        default=None, description="Seconds per stage (embed_s, recall_s, ...); None: a run file."
    )
    rerank_pairs: int = 0
    cached_pairs: int = Field(default=0, description="Pairs whose score came from the cache.")
    error: str | None = None


class State(BaseModel):
    version: int = STATE_VERSION
    inputs: dict[str, Any]
    systems: dict[str, str] = Field(description="name -> fingerprint of its settings.")


def prepare_out(out: Path, resume: bool) -> None:
    """Refuse to write into an existing non-empty folder unless resuming."""
    if out.exists() and not out.is_dir():
        raise EvalError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise EvalError(
            f"--out {out} exists and is not empty: pass --resume to continue the evaluation "
            "there, or choose another --out"
        )
    (out / RESULTS_DIR).mkdir(parents=True, exist_ok=True)


def check_state(out: Path, state: State) -> None:
    """Record ``state``, after checking that results already in ``out`` were made from
    the same inputs and, system by system, the same settings. Systems new to the suite
    are simply run; systems dropped from it are left out of the outputs."""
    path = out / STATE_FILE
    if path.is_file():
        try:
            old = State.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise EvalError(f"{path}: not an evaluation state file ({reason})") from None
        changed = [key for key in state.inputs if old.inputs.get(key) != state.inputs[key]]
        if changed:
            raise EvalError(
                f"--resume: {out} was started with other inputs ({', '.join(changed)} "
                "changed); use a new --out"
            )
        for name, fingerprint in state.systems.items():
            if name in old.systems and old.systems[name] != fingerprint:
                raise EvalError(
                    f"--resume: system {name!r} has other settings than when {out} was "
                    "started; rename it in the suite or use a new --out"
                )
        state = state.model_copy(update={"systems": {**old.systems, **state.systems}})
    atomic_write_text(path, state.model_dump_json(indent=2))


class ResultStore:
    """One system's results file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._handle: BinaryIO | None = None

    def load(self) -> dict[str, QueryResult]:
        """The results stored so far; a torn last line is dropped from the file."""
        if not self.path.is_file():
            return {}
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]  # a tail with no newline was torn
        results: dict[str, QueryResult] = {}
        lines = complete.split(b"\n")[:-1]
        kept = 0
        for number, raw in enumerate(lines, 1):
            try:
                result = QueryResult.model_validate_json(raw)
            except ValidationError:
                if number == len(lines):
                    break  # torn: written up to its newline but not all of it reached disk
                raise EvalError(
                    f"{self.path}:{number}: not a stored result; the file is damaged "
                    "(delete it to run that system again)"
                ) from None
            results[result.qid] = result
            kept += len(raw) + 1
        if kept < len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(kept)
                os.fsync(handle.fileno())
        return results

    def append(self, result: QueryResult) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("ab")
        self._handle.write(result.model_dump_json().encode() + b"\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def fingerprint(value: Any) -> str:
    """A stable digest of JSON-able settings."""
    import hashlib

    payload = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
