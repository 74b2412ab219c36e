"""The suite file: which systems an evaluation compares, against which baseline, on which
metrics.

::

    config: ../kb-qa.yaml          # optional base config; relative paths: the suite's folder
    baseline: bm25                 # every other system is compared with this one
    metrics: [ndcg@10, recall@100, mrr@10, map@100, precision@10]   # the default
    depth: 100                     # results per query kept in the runs
    systems:
      bm25: {recall.channels: [bm25], rerank.enabled: false}   # config overrides
      fused+qwen3: {rerank.top_n: 100}
      fused+clip: {reranker: {backend: clip}}                  # a mapping replaces a section
      external: {run: runs/bm25.trec}                          # somebody else's run
      qwen3-of-external: {rerank_run: runs/bm25.trec, top_n: 100}   # stage two over it

A system's keys are config keys exactly as ``--set`` takes them. Unknown suite keys are
errors naming the key; so are config keys, once :func:`system_configs` resolves them.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline.config import Config, ConfigError, load_config

DEFAULT_METRICS = ["ndcg@10", "recall@100", "mrr@10", "map@100", "precision@10"]
# ranx's metric names; "-lN" counts grades >= N as relevant (default 1, as trec_eval's -l).
_METRIC = re.compile(
    r"^(ndcg|ndcg_burges|map|mrr|precision|recall|r-precision|hits|hit_rate|f1|bpref)"
    r"(@[1-9]\d*)?(-l\d+)?$"
)
_METRIC_ALIASES = {"p": "precision", "r": "recall", "ap": "map", "rr": "mrr"}
# A name is a TREC run's tag and a file name: no spaces, no slashes.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@=-]*$")
SYSTEM_KINDS = ("config", "run", "rerank_run")


class SuiteError(ValueError):
    """A suite that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConfigSystem(_Strict):
    """The pipeline, with these config overrides."""

    kind: Literal["config"] = "config"
    overrides: dict[str, Any] = Field(default_factory=dict)


class RunSystem(_Strict):
    """An external TREC run, compared as it is."""

    kind: Literal["run"] = "run"
    run: Path

    @field_validator("run")
    @classmethod
    def _resolve(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolved(value, info)


class RerankRunSystem(_Strict):
    """Stage two over an external run's top N (candidates read from the index by id)."""

    kind: Literal["rerank_run"] = "rerank_run"
    rerank_run: Path
    top_n: int | None = Field(default=None, ge=1, description="None: the config's rerank.top_n.")
    overrides: dict[str, Any] = Field(default_factory=dict)

    @field_validator("rerank_run")
    @classmethod
    def _resolve(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolved(value, info)


SystemSpec = Annotated[ConfigSystem | RunSystem | RerankRunSystem, Field(discriminator="kind")]


class Suite(_Strict):
    systems: dict[str, SystemSpec] = Field(min_length=1)
    baseline: str
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS), min_length=1)
    depth: int = Field(default=100, ge=1, description="Results per query kept in the runs.")
    config: Path | None = Field(default=None, description="Base config of every system.")
    permutations: int = Field(
        default=10_000, ge=100, description="Resamples of the randomisation test."
    )
    seed: int = Field(default=42, description="Seed of the randomisation test.")

    @field_validator("systems", mode="before")
    @classmethod
    def _tag_systems(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {name: _tagged(raw) for name, raw in value.items()}

    @field_validator("systems")
    @classmethod
    def _names(cls, value: dict[str, SystemSpec]) -> dict[str, SystemSpec]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(
                    f"system name {name!r}: letters, digits and . _ + @ = - only (it is the "
                    "runs' tag and file name)"
                )
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(normalise_metric(name) for name in value))

    @field_validator("config")
    @classmethod
    def _resolve_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolved(value, info)

    @model_validator(mode="after")
    def _baseline_is_a_system(self) -> Suite:
        if self.baseline not in self.systems:
            close = difflib.get_close_matches(self.baseline, list(self.systems), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"baseline {self.baseline!r} is not one of the systems{hint}")
        return self

    @property
    def primary_metric(self) -> str:
        """The metric of the per-query difference plots: nDCG@10 when measured."""
        return "ndcg@10" if "ndcg@10" in self.metrics else self.metrics[0]


def normalise_metric(name: str) -> str:
    """ranx's spelling of a metric: ``nDCG@10`` -> ``ndcg@10``, ``P@10`` ->
    ``precision@10``, ``R@100`` -> ``recall@100``."""
    text = str(name).strip().lower()
    family, at, rest = text.partition("@")
    family, dash, level = family.partition("-l")
    family = _METRIC_ALIASES.get(family, family)
    spelled = family + at + rest + (f"-l{level}" if dash else "")
    if not _METRIC.match(spelled):
        raise ValueError(
            f"metric {name!r} is not one ranx computes (e.g. ndcg@10, recall@100, mrr@10, "
            "map@100, precision@10, ndcg_burges@10; -l2 counts grades >= 2 as relevant)"
        )
    return spelled


def metric_label(metric: str) -> str:
    """How reports print a metric: ``nDCG@10``, ``P@10``, ``Recall@100-l2``."""
    labels = {
        "ndcg": "nDCG",
        "ndcg_burges": "nDCG(exp)",
        "map": "MAP",
        "mrr": "MRR",
        "precision": "P",
        "recall": "Recall",
        "r-precision": "R-Prec",
        "hits": "Hits",
        "hit_rate": "HitRate",
        "f1": "F1",
        "bpref": "bpref",
    }
    match = re.match(r"^([a-z_-]+?)(@\d+)?(-l\d+)?$", metric)
    if match is None:
        return metric
    family, at, level = match.groups()
    return labels.get(family, family) + (at or "") + (level or "")


def load_suite(path: Path) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: suite file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: the top level must be a mapping (systems:, baseline:, ...)")
    try:
        return Suite.model_validate(raw, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise SuiteError(f"{path}: {_explain(exc)}") from None


def system_configs(
    suite: Suite,
    source: Path | str,
    config: Path | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Config]:
    """The config of every pipeline system (``config`` and ``rerank_run`` kinds): the base
    config (``config``, else the suite's ``config:``, else the defaults), then
    ``overrides`` (``--set``), then the system's own keys. A bad key is an error naming
    the suite, the system and the key."""
    base = config if config is not None else suite.config
    configs = {}
    for name, spec in suite.systems.items():
        if isinstance(spec, RunSystem):
            continue
        own = [f"{key}={json.dumps(value)}" for key, value in spec.overrides.items()]
        try:
            configs[name] = load_config(base, [*(overrides or []), *own])
        except ConfigError as exc:
            message = str(exc)
            for item in own:
                message = message.replace(f"--set {item}", f"{item} (system {name!r})")
            raise ConfigError(f"{source}: system {name!r}: {message}") from None
    return configs


def _tagged(raw: Any) -> Any:
    """A system's mapping with its kind: ``run:`` and ``rerank_run:`` name theirs; any
    other mapping is config overrides."""
    if raw is None:
        return {"kind": "config"}
    if not isinstance(raw, dict):
        raise ValueError(
            f"a system is a mapping of config overrides, {{run: FILE}} or {{rerank_run: FILE, "
            f"top_n: N}}, not {raw!r}"
        )
    if "run" in raw:
        return {"kind": "run", **raw}
    if "rerank_run" in raw:
        own = {key: raw[key] for key in ("rerank_run", "top_n") if key in raw}
        rest = {key: value for key, value in raw.items() if key not in own}
        return {"kind": "rerank_run", **own, "overrides": rest}
    return {"kind": "config", "overrides": raw}


def _resolved(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    value = Path(value).expanduser()
    return value if value.is_absolute() or base is None else Path(base) / value


def _explain(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        kind = None
        # pydantic names the union member it tried (systems.NAME.run.KEY): drop it.
        if len(loc) >= 3 and loc[0] == "systems" and loc[2] in SYSTEM_KINDS:
            kind = loc.pop(2)
        key = ".".join(loc)
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            known = _known_keys(kind)
            close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            problems.append(f"unknown key {key!r}; {hint}")
        else:
            problems.append(f"{key}: {message}" if key else message)
    return "; ".join(dict.fromkeys(problems))


def _known_keys(kind: str | None) -> list[str]:
    models: dict[str | None, type[BaseModel]] = {
        None: Suite,
        "run": RunSystem,
        "rerank_run": RerankRunSystem,
        "config": ConfigSystem,
    }
    return [name for name in models[kind].model_fields if name not in ("kind", "overrides")]
