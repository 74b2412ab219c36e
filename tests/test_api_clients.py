"""The REST API seen by clients it does not control: the official Cohere SDK, a plain
HTTP client speaking Jina's rerank schema, and Schemathesis fuzzing every operation of
the app's own OpenAPI schema.

Everything runs against real uvicorn servers on 127.0.0.1 with the tiny random-weight
models: scores are meaningless, so the tests check shapes, order, limits and that every
path gives the same number for the same pair, never which document wins."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_support import copy_index, live_server, served, tiny_pipeline

QUERY = "a model rocket on its launch pad"
DOCUMENTS = [
    "Model rocket kit with launch pad, 1:100 scale",
    "Porcelain espresso cup with saucer",
    "Returns policy: unworn items within 30 days",
    "Tabby cat poster, matte print",
]
PRODUCTS = Path(__file__).resolve().parents[1] / "examples" / "products.jsonl"
API_TOKEN = "api-token-for-tests"
ADMIN_TOKEN = "admin-token-for-tests"


@dataclass(frozen=True)
class Server:
    base: str
    api_token: str
    admin_token: str

    def headers(self, admin: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token if admin else self.api_token}"}


def _token_files(folder: Path) -> dict[str, str]:
    (folder / "api-token").write_text(API_TOKEN + "\n", encoding="utf-8")
    (folder / "admin-token").write_text(ADMIN_TOKEN + "\n", encoding="utf-8")
    return {
        "token_file": str(folder / "api-token"),
        "admin_token_file": str(folder / "admin-token"),
    }


@pytest.fixture(scope="module")
def server(tiny_examples_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A live server with an API token and a separate admin token (read-only use)."""
    folder = tmp_path_factory.mktemp("clients")
    serve = _token_files(folder)
    with live_server({"examples": copy_index(tiny_examples_index, folder)}, serve=serve) as base:
        yield Server(base, API_TOKEN, ADMIN_TOKEN)


# -- the Cohere SDK, unchanged -------------------------------------------------------------


def _cohere(server: Server, api_key: str | None = None) -> Any:
    import cohere

    return cohere.ClientV2(base_url=server.base, api_key=api_key or server.api_token, timeout=60)


def test_cohere_sdk_reranks_through_v2_rerank(server: Server) -> None:
    response = _cohere(server).rerank(model="anything", query=QUERY, documents=DOCUMENTS, top_n=2)

    assert len(response.results) == 2  # top_n honoured
    scores = [r.relevance_score for r in response.results]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 and math.isfinite(s) for s in scores)
    indexes = [r.index for r in response.results]
    assert len(set(indexes)) == 2 and all(0 <= i < len(DOCUMENTS) for i in indexes)
    assert response.id
    assert response.meta is not None and response.meta.api_version is not None

    everything = _cohere(server).rerank(model="anything", query=QUERY, documents=DOCUMENTS)
    assert sorted(r.index for r in everything.results) == list(range(len(DOCUMENTS)))
    # The top two of the full ranking are the top_n=2 answer.
    assert [(r.index, r.relevance_score) for r in everything.results[:2]] == list(
        zip(indexes, scores, strict=True)
    )


def test_cohere_sdk_raises_its_401_error_for_a_wrong_key(server: Server) -> None:
    import cohere

    with pytest.raises(cohere.errors.UnauthorizedError) as caught:
        _cohere(server, api_key="not-the-token").rerank(
            model="anything", query=QUERY, documents=DOCUMENTS
        )
    assert caught.value.status_code == 401
    assert "token" in caught.value.body["detail"]


def test_cohere_jina_and_pipeline_scores_agree(server: Server) -> None:
    """The SDK path adds nothing of its own: /v2/rerank, /v1/rerank, ``Pipeline.rerank``
    and the reranker's ``score`` give the same score to each (query, document) pair."""
    from pipeline.schema import Content, Query
    from rerankers.request import parse_request

    cohere_results = _cohere(server).rerank(model="x", query=QUERY, documents=DOCUMENTS).results
    by_cohere = {r.index: r.relevance_score for r in cohere_results}

    answer = httpx.post(
        f"{server.base}/v1/rerank",
        json={"query": QUERY, "documents": DOCUMENTS},
        headers=server.headers(),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    by_jina = {r["index"]: r["relevance_score"] for r in answer.json()["results"]}

    pipeline = tiny_pipeline()
    request = parse_request(
        {"query": {"text": QUERY}, "documents": [{"text": d} for d in DOCUMENTS]}
    )
    in_process = pipeline.rerank(request).scores
    direct = pipeline.reranker.score(Query(text=QUERY), [Content(text=d) for d in DOCUMENTS])

    in_order = [by_cohere[i] for i in range(len(DOCUMENTS))]
    assert in_order == [by_jina[i] for i in range(len(DOCUMENTS))]
    # Another model instance in this process: same weights, same batch, same numbers,
    # exactly (random weights score everything near 0.5, so a tolerance would hide a
    # swapped or misrouted document).
    assert in_order == in_process
    assert in_order == direct
    assert len(set(in_order)) == len(DOCUMENTS)  # really scored, not defaulted


# -- Jina's request shape, by hand ---------------------------------------------------------


def test_v1_rerank_answers_jinas_documented_shape(server: Server) -> None:
    body = {
        "model": "jina-reranker-v2-base-multilingual",
        "query": QUERY,
        "documents": DOCUMENTS,
        "top_n": 3,
        "return_documents": True,
    }
    with httpx.Client(base_url=server.base, headers=server.headers(), timeout=60) as client:
        answer = client.post("/v1/rerank", json=body)
        assert answer.status_code == 200, answer.text
        payload = answer.json()
        results = payload["results"]
        assert len(results) == 3
        scores = [r["relevance_score"] for r in results]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores)
        for result in results:
            assert result["document"]["text"] == DOCUMENTS[result["index"]]
        assert isinstance(payload["usage"]["total_tokens"], int)
        assert payload["usage"]["total_tokens"] > 0
        assert payload["model"] and payload["id"]

        bare = client.post("/v1/rerank", json={**body, "return_documents": False}).json()
        assert [r["index"] for r in bare["results"]] == [r["index"] for r in results]
        assert all(r.get("document") is None for r in bare["results"])

        # Jina's multimodal models take documents as objects; text objects score like
        # the plain strings.
        objects = client.post(
            "/v1/rerank", json={**body, "documents": [{"text": d} for d in DOCUMENTS]}
        ).json()
        assert [(r["index"], r["relevance_score"]) for r in objects["results"]] == [
            (r["index"], r["relevance_score"]) for r in results
        ]


# -- fixes found by the fuzz, pinned -------------------------------------------------------


def test_fuzz_findings_stay_fixed(tiny_examples_index: Path, tmp_path: Path) -> None:
    """Inputs that the fuzz found mishandled: a thumbnail of a video-only asset (500),
    and a video given as an empty list of frames (a misleading NaN-vector 422 that failed
    the whole search even beside text)."""
    with served({"examples": copy_index(tiny_examples_index, tmp_path)}) as client:
        for url in (
            "/v1/indexes/examples/assets/clip-launch/thumbnail",
            "/v1/indexes/examples/assets/clip-launch/thumbnail?t=0.5",
        ):
            answer = client.get(url)
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "image/jpeg"
            assert answer.content[:3] == b"\xff\xd8\xff"

        search = client.post(
            "/v1/indexes/examples/search", json={"query": {"text": "rocket", "video": []}}
        )
        assert search.status_code == 422
        assert search.json()["field"] == "query.video"

        rerank = client.post("/v1/rerank", json={"query": "q", "documents": [{"video": []}, "d"]})
        assert rerank.status_code == 200, rerank.text
        failed = [r for r in rerank.json()["results"] if r["index"] == 0]
        assert failed[0]["relevance_score"] is None and "frames" in failed[0]["error"]

        upsert = client.post(
            "/v1/indexes/examples/assets", json={"assets": [{"id": "empty", "video": []}]}
        )
        assert upsert.status_code == 200, upsert.text
        assert [f["id"] for f in upsert.json()["failed"]] == ["empty"]


def test_deeply_nested_json_is_refused_not_a_crash(
    tiny_examples_index: Path, tmp_path: Path
) -> None:
    """JSON nested past the parser's recursion limit was a 500 on the routes that read
    their body by hand (search, upsert); metadata nested as deep as the parser allows is
    stored like any other."""
    deep = b"[" * 100_000 + b"]" * 100_000
    json_type = {"content-type": "application/json"}
    with served({"examples": copy_index(tiny_examples_index, tmp_path)}) as client:
        for route in (SEARCH, "/v1/indexes/examples/assets", "/v1/rerank", "/v2/rerank"):
            answer = client.post(route, content=deep, headers=json_type)
            assert answer.status_code in (400, 422), (route, answer.status_code, answer.text)
            assert answer.json()["detail"]
        nested: Any = 1
        for _ in range(900):
            nested = {"a": nested}
        body = {"assets": [{"id": "deep", "text": "t", "metadata": {"m": nested}}]}
        upsert = client.post("/v1/indexes/examples/assets", json=body)
        assert upsert.status_code == 200 and upsert.json()["indexed"] == 1, upsert.text


LONE = "\ud800"  # JSON may escape it; no tokenizer, filter or store can take it
SEARCH = "/v1/indexes/examples/search"


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        (SEARCH, {"query": {"text": LONE}}, "query.text"),
        (SEARCH, {"query": {"text": "a"}, "instruction": LONE}, "instruction"),
        (SEARCH, {"query": {"text": "a"}, "filter": f'k == "{LONE}"'}, "filter"),
        ("/v1/rerank", {"query": LONE, "documents": ["d"]}, "query"),
        ("/v1/rerank", {"query": "q", "documents": ["d", LONE]}, "documents"),
        ("/v2/rerank", {"model": "m", "query": "q", "documents": [LONE]}, "documents"),
        ("/v1/indexes/examples/assets", {"assets": [{"id": "a", "text": LONE}]}, "assets[0].text"),
        (
            "/v1/indexes/examples/assets",
            {"assets": [{"id": "a", "text": "t", "metadata": {"k": LONE}}]},
            "assets[0].metadata",
        ),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(
    tiny_examples_index: Path, tmp_path: Path, route: str, body: dict[str, Any], field: str
) -> None:
    """Hypothesis never generates a lone surrogate, but JSON carries one: it crashed the
    tokenizers (500), and one in stored metadata broke every later search of the index."""
    with served({"examples": copy_index(tiny_examples_index, tmp_path)}) as client:
        answer = client.post(
            route, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == field
        after = client.post(SEARCH, json={"query": {"text": "rocket"}})
        assert after.status_code == 200, after.text


# -- Schemathesis: no input makes a 5xx ----------------------------------------------------

ADMIN_OPERATIONS = {
    "POST /v1/indexes/{name}/assets",
    "DELETE /v1/indexes/{name}/assets/{asset_id}",
    "POST /v1/models/reranker/load",
    "POST /v1/models/reranker/unload",
}
PUBLIC_OPERATIONS = {"GET /healthz", "GET /readyz", "GET /metrics"}
# Examples per strategy and mode. Operations without inputs answer the same request each
# time, so they get one or two.
EXAMPLES = int(os.environ.get("VLSEARCH_FUZZ_EXAMPLES", "25"))
FEW = 2
# VLSEARCH_FUZZ_SEED=N explores other inputs (VLSEARCH_FUZZ_EXAMPLES=N, more of them); by
# default the fuzz is deterministic.
SEED = os.environ.get("VLSEARCH_FUZZ_SEED")


@pytest.fixture(scope="module")
def fuzz_server(
    tiny_examples_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A live server on a private copy of the index: the fuzz writes and deletes."""
    folder = tmp_path_factory.mktemp("fuzz")
    serve = _token_files(folder)
    with live_server({"examples": copy_index(tiny_examples_index, folder)}, serve=serve) as base:
        yield Server(base, API_TOKEN, ADMIN_TOKEN)


def _asset_ids() -> list[str]:
    lines = PRODUCTS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["id"] for line in lines if line.strip()]


def _conformance_checks() -> list[Any]:
    """Schemathesis's response checks: no 5xx, and status codes, content types, headers
    and bodies as the schema documents them. Left out: positive_data_acceptance (the
    server refuses schema-valid input the schema cannot describe: filter grammar, media
    strings that are no file, values over serve.max_top_k) and negative_data_rejection
    (pydantic's lax mode takes ``true`` for 1; a multipart part with an empty list is no
    part at all)."""
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    names = [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
    return [CHECKS.get_one(name) for name in names]


def _text_only(case: Any) -> Any:
    """The case without media strings and with small top_k / top_n, so the fuzz also
    reaches the models (random strings are almost never a readable image)."""
    body = case.body
    if not isinstance(body, dict):
        return case
    if "multipart" in str(case.media_type) and "query" not in body and "assets" not in body:
        body.pop("image", None)
        body.pop("video", None)
        body["text"] = f"x{body.get('text') or ''}"
    items = [body["query"]] if isinstance(body.get("query"), dict) else []
    for key in ("documents", "assets"):
        if isinstance(body.get(key), list):
            items += [item for item in body[key] if isinstance(item, dict)]
    for item in items:
        item.pop("image", None)
        item.pop("video", None)
        item["text"] = f"x{item.get('text') or ''}"
    if isinstance(body.get("query"), str):
        body["query"] = f"q{body['query']}"
    for key in ("top_k", "top_n"):
        if isinstance(body.get(key), int) and not isinstance(body[key], bool) and body[key] > 50:
            body[key] = 1 + body[key] % 50
    return case


def _strategies(operation: Any, negative: bool, ids: list[str]) -> list[tuple[Any, int]]:
    """Strategies and their example counts: cases as generated, plus (when the operation
    names an index) cases on the served index and on each of its real assets, so requests
    get past 404 into the work."""
    from schemathesis import GenerationMode

    mode = GenerationMode.NEGATIVE if negative else GenerationMode.POSITIVE
    examples = EXAMPLES if _has_inputs(operation, negative) else FEW
    names = {p.name for p in operation.path_parameters}
    strategies = [(operation.as_strategy(generation_mode=mode), examples)]
    if names == {"name"}:
        pinned = operation.as_strategy(generation_mode=mode, path_parameters={"name": "examples"})
        strategies.append((pinned, examples))
        if list(operation.body) and not negative:
            strategies.append((pinned.map(_text_only), examples))
    elif names == {"name", "asset_id"}:
        # Every asset: an image, a video-only asset, a text-only one each take other paths.
        each = max(3, examples // len(ids))
        strategies += [
            (
                operation.as_strategy(
                    generation_mode=mode, path_parameters={"name": "examples", "asset_id": asset}
                ),
                each,
            )
            for asset in ids
        ]
    elif list(operation.body) and not negative:
        strategies.append((operation.as_strategy(generation_mode=mode).map(_text_only), examples))
    return strategies


def _has_inputs(operation: Any, negative: bool) -> bool:
    """Whether the operation takes anything a client chooses (the Authorization header
    aside); for negative cases, anything a request can get wrong (a path segment is
    always a string)."""
    inputs = [p for p in operation.iter_parameters() if p.name.lower() != "authorization"]
    if negative:
        inputs = [p for p in inputs if p.location != "path"]
    return bool(inputs) or bool(list(operation.body))


def _run_cases(strategy: Any, examples: int, label: str, send: Callable[[Any], None]) -> None:
    from hypothesis import HealthCheck, Phase, given, seed, settings

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=SEED is None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
        print_blob=False,
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        send(case)

    if SEED is not None:
        run = seed(int(SEED) + sum(map(ord, label)))(run)
    run()


def _failure(label: str, case: Any, response: Any, reason: str, headers: dict[str, str]) -> str:
    curl = case.as_curl_command(headers=headers)
    kind = response.headers.get("content-type", "")
    if kind.startswith(("application/json", "text/")):
        body = response.content[:300].decode("utf-8", "replace")
    else:
        body = f"<{len(response.content)} bytes of {kind or 'no type'}>"
    return f"{label}: {reason}\n  answered {response.status_code}: {body}\n  {curl[:600]}"


def test_fuzz_finds_no_server_error_and_conforms(fuzz_server: Server) -> None:
    """Every operation, positive and negative cases, with the right token: no 5xx at all
    (one request at a time: no stage is ever saturated), and every response as the
    schema documents it."""
    import schemathesis
    from schemathesis.core.failures import FailureGroup

    schema = schemathesis.openapi.from_url(f"{fuzz_server.base}/openapi.json")
    checks = _conformance_checks()
    ids = _asset_ids()
    problems: dict[tuple[str, str], str] = {}
    seen: set[str] = set()
    statuses: dict[str, set[int]] = {}

    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label
        seen.add(label)
        headers = fuzz_server.headers(admin=label in ADMIN_OPERATIONS)

        def send(case: Any, label: str = label, headers: dict[str, str] = headers) -> None:
            response = case.call(base_url=fuzz_server.base, headers=headers, timeout=60)
            if "Authorization" not in response.request.headers:
                # Schemathesis drops the credentials to test the declared bearer scheme:
                # that must be a 401.
                if response.status_code != 401:
                    found = _failure(label, case, response, "no token but not 401", headers)
                    problems.setdefault((label, "auth"), found)
                return
            statuses.setdefault(label, set()).add(response.status_code)
            if response.status_code >= 500:
                problems.setdefault((label, "5xx"), _failure(label, case, response, "5xx", headers))
            try:
                case.validate_response(
                    response,
                    checks=checks,
                    headers=headers,
                    transport_kwargs={"base_url": fuzz_server.base, "headers": headers},
                )
            except FailureGroup as group:
                for failure in group.exceptions:
                    found = _failure(label, case, response, failure.title, headers)
                    problems.setdefault((label, failure.code), found)

        for negative in (False, True):
            if negative and not _has_inputs(operation, negative=True):
                continue
            for strategy, examples in _strategies(operation, negative, ids):
                _run_cases(strategy, examples, label, send)

    assert not problems, "\n\n".join(problems.values())
    assert seen >= ADMIN_OPERATIONS | PUBLIC_OPERATIONS | {"POST /v2/rerank", "POST /v1/rerank"}
    # The fuzz got past auth and 404s into real work on each kind of route.
    for label in (
        "POST /v1/indexes/{name}/search",
        "POST /v1/rerank",
        "POST /v2/rerank",
        "POST /v1/indexes/{name}/assets",
        "GET /v1/indexes/{name}/assets/{asset_id}/thumbnail",
        "GET /v1/indexes/{name}/assets/{asset_id}/media",
    ):
        assert 200 in statuses[label], (label, statuses[label])
        assert 401 not in statuses[label], (label, statuses[label])


def test_fuzz_without_a_valid_token_gets_401_only(fuzz_server: Server) -> None:
    """No token, a wrong one, or the API token on an admin route: every protected
    operation answers 401 (before validating anything), never a 5xx."""
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{fuzz_server.base}/openapi.json")
    ids = _asset_ids()
    wrong: list[dict[str, str]] = [
        {},  # the generated Authorization header, if any: random, so never the token
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": f"Basic {API_TOKEN}"},
    ]
    problems: list[str] = []
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label
        if label in PUBLIC_OPERATIONS:
            continue
        attempts = wrong + ([fuzz_server.headers()] if label in ADMIN_OPERATIONS else [])
        for headers in attempts:

            def send(case: Any, label: str = label, headers: dict[str, str] = headers) -> None:
                nonlocal checked
                response = case.call(base_url=fuzz_server.base, headers=headers, timeout=60)
                checked += 1
                if response.status_code != 401 or "Bearer" not in response.headers.get(
                    "www-authenticate", ""
                ):
                    problems.append(_failure(label, case, response, "not a 401", headers))

            for strategy, _ in _strategies(operation, negative=False, ids=ids)[:2]:
                _run_cases(strategy, 4, label, send)
    assert not problems, "\n\n".join(problems[:10])
    assert checked > 50
