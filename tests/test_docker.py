"""The image definition, checked without a Docker engine: the Dockerfile (parsed with
dockerfile-parse) and docker-compose.yaml, and the image's HEALTHCHECK command run for real
against a server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import runpy
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from wyoming_openai.config_sources import load_settings
from wyoming_openai.server import WyomingOpenAIServer

ROOT = Path(__file__).resolve().parent.parent
COMPILERS = re.compile(
    r"\b(gcc|g\+\+|cc|c\+\+|clang|build-essential|make|cmake|rustc|cargo|gfortran)\b"
)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for kind, value in self.instructions if kind == instruction]


def stages() -> list[Stage]:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    found: list[Stage] = []
    global_args = {}
    for item in parser.structure:
        kind, value = item["instruction"], item["value"]
        if kind == "COMMENT":
            continue
        if kind == "FROM":
            image, _, name = value.partition(" AS ")
            for arg, default in global_args.items():
                image = image.replace("${" + arg + "}", default)
            found.append(Stage(image.strip(), name.strip() or None))
        elif not found and kind == "ARG":
            arg, _, default = value.partition("=")
            global_args[arg] = default.strip('"')
        else:
            found[-1].instructions.append((kind, value))
    return found


def stages_args() -> list[str]:
    """The global ``ARG`` lines of the Dockerfile (before the first ``FROM``)."""
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    found = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            break
        if item["instruction"] == "ARG":
            found.append(item["value"])
    return found


def final() -> Stage:
    return stages()[-1]


def healthcheck_command() -> list[str]:
    (value,) = final().values("HEALTHCHECK")
    exec_form = value[value.index("CMD") + len("CMD") :].strip()
    return list(json.loads(exec_form))


def test_multi_stage_on_the_official_slim_python_image() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    requires = PYPROJECT["project"]["requires-python"]  # ">=3.11"
    for stage in all_stages:
        match = re.fullmatch(r"python:(3\.\d+)-slim(-\w+)?", stage.base)
        assert match, f"{stage.base}: not an official slim Python image"
        assert tuple(map(int, match[1].split("."))) >= tuple(
            map(int, requires.removeprefix(">=").split("."))
        )
    builder = all_stages[0].name
    copies = final().values("COPY")
    assert any(c.startswith(f"--from={builder} /opt/venv") for c in copies), copies


def test_runtime_stage_holds_no_compiler() -> None:
    # Official -slim images ship no compiler; nothing in the final stage may add one.
    for run in final().values("RUN"):
        assert "apt-get install" not in run and "apk add" not in run, run
        assert not COMPILERS.search(run), run
    for copy in final().values("COPY"):
        assert not COMPILERS.search(copy), copy


def test_runs_as_a_non_root_user() -> None:
    (user,) = final().values("USER")
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    created = " ".join(final().values("RUN"))
    uid = re.search(rf"useradd\b.*--uid (\d+)\b.*\b{re.escape(user)}\b", created)
    assert uid and int(uid[1]) != 0
    kinds = [kind for kind, _ in final().instructions]
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")


def test_exposes_the_ports_it_listens_on() -> None:
    assert final().values("EXPOSE") == ["10300 10301"]
    env = " ".join(final().values("ENV"))
    uri = re.search(r"WYOMING_OPENAI_URI=(\S+)", env)
    web_uri = re.search(r"WYOMING_OPENAI_WEB_URI=(\S+)", env)
    assert uri and web_uri, env
    settings = load_settings(
        [],
        {
            "WYOMING_OPENAI_URI": uri[1],
            "WYOMING_OPENAI_WEB_URI": web_uri[1],
            "OPENAI_API_KEY": "sk-x",
        },
    )
    assert settings.uri == "tcp://0.0.0.0:10300"
    assert settings.web.uri == "http://0.0.0.0:10301"  # every interface of the container


def test_entrypoint_is_the_console_script() -> None:
    (entrypoint,) = final().values("ENTRYPOINT")
    assert json.loads(entrypoint) == ["wyoming-openai"]
    assert "wyoming-openai" in PYPROJECT["project"]["scripts"]


def test_extras_build_argument_installs_the_extra() -> None:
    build = stages()[0]
    assert 'EXTRAS=""' in build.values("ARG")
    install = " ".join(build.values("RUN"))
    assert "pip wheel --no-deps --wheel-dir /tmp/wheels ." in install
    assert (
        'spec="$wheel[$EXTRAS]"' in install and 'pip install --only-binary :all: "$spec"' in install
    )
    assert "local" in PYPROJECT["project"]["optional-dependencies"]


def test_the_build_installs_nothing_but_wheels() -> None:
    """Every ``pip install`` of a package (all but pip's own upgrade) refuses sdists, so a
    dependency without a wheel for the platform fails the build at once."""
    commands = [
        part.strip()
        for run in stages()[0].values("RUN")
        for part in run.split("&&")
        if "pip install" in part and "--upgrade pip" not in part
    ]
    assert commands
    assert all("--only-binary :all:" in command for command in commands), commands


def test_check_wheels_checks_the_image_platform() -> None:
    """script/check-wheels resolves for the image's Python (read from the Dockerfile) on
    Debian 12 bookworm (glibc 2.36), the platform both image stages are built on."""
    namespace = runpy.run_path(str(ROOT / "script" / "check-wheels"), run_name="check_wheels")
    python = next(a for a in stages_args() if a.startswith("PYTHON_VERSION="))
    assert namespace["image_python_version"]() == python.split("=", 1)[1]
    assert namespace["BOOKWORM_GLIBC"] == "2.36"
    assert all(stage.base.endswith("-slim-bookworm") for stage in stages())
    tags = namespace["platform_tags"]("aarch64", 36)
    assert "manylinux_2_36_aarch64" in tags and "manylinux_2_28_aarch64" in tags


def test_copied_sources_exist_and_are_not_ignored() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for copy in stages()[0].values("COPY"):
        for source in shlex.split(copy)[:-1]:
            assert (ROOT / source).exists(), source
            assert source not in ignored and source.rstrip("/") not in ignored


def test_compose_uses_host_networking_a_restart_policy_and_the_env_file() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    (service,) = compose["services"].values()
    assert service["network_mode"] == "host"  # mDNS needs the host's network
    assert service["restart"] in ("always", "unless-stopped")
    assert service["env_file"]
    assert service["build"]["context"] == "."
    assert "EXTRAS" in service["build"]["args"]


@pytest.mark.parametrize("reachable", [True, False])
async def test_healthcheck_command_checks_the_server(
    server: WyomingOpenAIServer, port: int, reachable: bool
) -> None:
    """The image's HEALTHCHECK, run as Docker runs it (exec form, the image's environment
    with WYOMING_OPENAI_URI), against a running server and against a closed port."""
    command = healthcheck_command()
    assert command[:3] == ["python", "-m", "wyoming_openai.health"]
    uri = f"tcp://0.0.0.0:{port}"
    if not reachable:
        await server.stop()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command[1:],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin"), "WYOMING_OPENAI_URI": uri},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    if reachable:
        assert process.returncode == 0, stderr.decode()
    else:
        assert process.returncode == 1
        assert "unhealthy" in stderr.decode() and str(port) in stderr.decode()
