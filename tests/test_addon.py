"""The Home Assistant OS add-on: its files against the Supervisor's rules, its options against
the catalogue and the settings, its entry point against a fake Supervisor.

The JSON schemas below are written from the Supervisor's add-on documentation
(developers.home-assistant.io, "Add-on configuration", "Create an add-on repository",
"Presenting your add-on") and the rules the Supervisor applies
(``supervisor/addons/validate.py``: ``_SCHEMA_ADDON_CONFIG``, ``SCHEMA_BUILD_CONFIG``,
``SCHEMA_ADDON_TRANSLATIONS``; ``supervisor/addons/options.py``: ``RE_SCHEMA_ELEMENT`` and
how options are checked; ``supervisor/store/validate.py``: ``SCHEMA_REPOSITORY_CONFIG``;
``supervisor/validate.py``: ``docker_ports``, ``docker_image``). The Supervisor drops keys it
does not know without a word, so these schemas refuse them: a typo would otherwise vanish.
No Docker engine here: the Dockerfile is checked by parsing it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import runpy
import signal
import socket
import struct
import sys
import typing
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from aiohttp import web
from dockerfile_parse import DockerfileParser

from tests.fake_openai import DEFAULT_API_KEY, FakeOpenAI
from tests.utterances import eventually
from wyoming_openai import __version__
from wyoming_openai.addon import (
    ADDON_DEFAULTS,
    OPTIONS,
    load_addon_settings,
    read_options,
    settings_tree,
)
from wyoming_openai.catalogue import DEFAULT_MODELS, OPENAI_VOICES, WHISPER_LANGUAGES
from wyoming_openai.config import Settings, TtsSettings
from wyoming_openai.config_sources import AddonEnvironment, addon_environment
from wyoming_openai.errors import ConfigError
from wyoming_openai.health import check, client_uri
from wyoming_openai.server import WyomingOpenAIServer
from wyoming_openai.supervisor import (
    DiscoveryRefused,
    announce,
    backoff_delays,
    discovery_message,
    post_discovery,
)

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "wyoming_openai_addon"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


CONFIG = load_yaml(ADDON / "config.yaml")
BUILD = load_yaml(ADDON / "build.yaml")
REPOSITORY = load_yaml(ROOT / "repository.yaml")
TRANSLATIONS = load_yaml(ADDON / "translations" / "en.yaml")

# --------------------------------------------------------------------------- the rules

ARCHES = ["armhf", "armv7", "aarch64", "amd64", "i386"]
"""``arch``: the architectures the Supervisor knows (``ARCH_ALL``)."""

RE_SLUG = r"^[-_.A-Za-z0-9]+$"
"""``slug`` (``RE_SLUG``): unique in its repository and URI friendly."""

RE_VERSION = r"^[0-9]+\.[0-9]+\.[0-9]+(?:[.-]?[0-9A-Za-z]+)*$"
"""``version``: a release version (the Supervisor compares versions to offer updates); it
is also the tag of the image the Supervisor builds or pulls (a Docker tag: ``[\\w.-]``)."""

RE_SCHEMA_ELEMENT = (
    r"^(?:|bool|email|url|port|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>\d+)?,(?P<i_max>\d+)?\))?"
    r"|float(?:\((?P<f_min>[\d\.]+)?,(?P<f_max>[\d\.]+)?\))?"
    r"|match\((?P<match>.*)\)|list\((?P<list>.+)\))\??$"
)
"""The option types of ``schema`` (``supervisor/addons/options.py``): ``str``, ``bool``,
``int``, ``float`` (with optional bounds), ``email``, ``url``, ``password``, ``port``,
``match(REGEX)``, ``list(a|b|...)``, ``device``; a trailing ``?`` makes the option optional."""

RE_DOCKER_PORT = r"^\d+(?:/tcp|/udp)?$"
RE_DOCKER_IMAGE = r"^([a-zA-Z\-\.:\d{}]+/)*?([\-\w{}]+)/([\-\w{}]+)$"
RE_DOCKER_IMAGE_BUILD = r"^([a-zA-Z\-\.:\d{}]+/)*?([\-\w{}]+)/([\-\w{}]+)(:[\.\-\w{}]+)?$"

SUPERVISOR_CONFIG_KEYS = [
    "name", "version", "slug", "description", "arch", "machine", "url", "startup", "boot",
    "init", "advanced", "stage", "ports", "ports_description", "watchdog", "webui", "ingress",
    "ingress_port", "ingress_entry", "ingress_stream", "panel_icon", "panel_title",
    "panel_admin", "homeassistant", "host_network", "host_pid", "host_ipc", "host_uts",
    "host_dbus", "devices", "udev", "tmpfs", "map", "environment", "privileged", "apparmor",
    "full_access", "audio", "video", "gpio", "usb", "uart", "devicetree", "kernel_modules",
    "realtime", "hassio_api", "hassio_role", "homeassistant_api", "stdin", "legacy",
    "docker_api", "auth_api", "services", "discovery", "backup_exclude", "backup_pre",
    "backup_post", "restore_pre", "restore_post", "backup", "options", "schema", "image",
    "ulimits", "timeout", "journald", "breaking_versions",
]  # fmt: skip
"""Every key ``_SCHEMA_ADDON_CONFIG`` knows."""

URL = {"type": "string", "pattern": r"^https?://[^\s/]+(/\S*)?$"}

SCHEMA_ELEMENT: dict[str, Any] = {
    "anyOf": [
        # ECMA-262 has no named groups: the same expression without the names.
        {"type": "string", "pattern": re.sub(r"\(\?P<\w+>", "(", RE_SCHEMA_ELEMENT)},
        {"type": "array", "items": {"$ref": "#/$defs/element"}},
        {"type": "object", "additionalProperties": {"$ref": "#/$defs/element"}},
    ]
}
"""An option's type, or a list or mapping of them (nested options)."""

ADDON_CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {"element": SCHEMA_ELEMENT},
    "type": "object",
    "required": ["name", "version", "slug", "description", "arch"],
    "propertyNames": {"enum": SUPERVISOR_CONFIG_KEYS},
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "version": {"type": "string", "pattern": RE_VERSION, "maxLength": 128},
        "slug": {"type": "string", "pattern": RE_SLUG},
        "description": {"type": "string", "minLength": 1},
        "arch": {
            "type": "array",
            "items": {"enum": ARCHES},
            "minItems": 1,
            "uniqueItems": True,
        },
        "url": URL,
        "init": {"type": "boolean"},
        "startup": {"enum": ["initialize", "system", "services", "application", "once"]},
        "boot": {"enum": ["auto", "manual", "manual_only"]},
        "stage": {"enum": ["stable", "experimental", "deprecated"]},
        "homeassistant": {"type": "string", "pattern": r"^\d{4}\.\d{1,2}\.\d+([.\w]*)$"},
        "discovery": {"type": "array", "items": {"type": "string"}},
        "ports": {
            "type": "object",
            "propertyNames": {"pattern": RE_DOCKER_PORT},
            "additionalProperties": {
                "anyOf": [{"type": "null"}, {"type": "integer", "minimum": 1, "maximum": 65535}]
            },
        },
        "options": {"type": "object"},
        "schema": {
            "anyOf": [
                {"type": "object", "additionalProperties": {"$ref": "#/$defs/element"}},
                {"const": False},
            ]
        },
        "image": {"type": "string", "pattern": RE_DOCKER_IMAGE},
        "timeout": {"type": "integer", "minimum": 10, "maximum": 300},
    },
}

BUILD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "build_from": {
            "anyOf": [
                {"type": "string", "pattern": RE_DOCKER_IMAGE_BUILD},
                {
                    "type": "object",
                    "propertyNames": {"enum": ARCHES},
                    "additionalProperties": {"type": "string", "pattern": RE_DOCKER_IMAGE_BUILD},
                },
            ]
        },
        "squash": {"type": "boolean"},
        "args": {"type": "object", "additionalProperties": {"type": "string"}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

REPOSITORY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "url": URL,
        "maintainer": {"type": "string"},
    },
}

TRANSLATION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "$defs": {
        "field": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "description": {"type": ["string", "null"]},
                "fields": {"type": "object", "additionalProperties": {"$ref": "#/$defs/field"}},
            },
        }
    },
    "properties": {
        "configuration": {"type": "object", "additionalProperties": {"$ref": "#/$defs/field"}},
        "network": {
            "type": "object",
            "propertyNames": {"pattern": RE_DOCKER_PORT},
            "additionalProperties": {"type": "string"},
        },
    },
}


def validate(document: Any, schema: dict[str, Any]) -> None:
    """Every schema violation at once, one per line."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]
    assert not errors, "\n".join(errors)


def check_option(kind: str, value: Any) -> None:
    """What the Supervisor checks of an option's value (``AddonOptions._single_validate``)."""
    match = re.fullmatch(RE_SCHEMA_ELEMENT, kind)
    assert match, kind
    if kind.startswith(("str", "password")):
        assert isinstance(value, str), value
        low, high = match["s_min"] or match["p_min"], match["s_max"] or match["p_max"]
        assert low is None or len(value) >= int(low)
        assert high is None or len(value) <= int(high)
    elif kind.startswith("float"):
        assert isinstance(value, int | float) and not isinstance(value, bool), value
        assert match["f_min"] is None or value >= float(match["f_min"]), value
        assert match["f_max"] is None or value <= float(match["f_max"]), value
    elif kind.startswith("int"):
        assert isinstance(value, int) and not isinstance(value, bool), value
    elif kind.startswith("bool"):
        assert isinstance(value, bool), value
    elif kind.startswith("list"):
        assert str(value) in match["list"].split("|"), (kind, value)
    else:  # email, url, port, match, device: not used by this add-on
        raise AssertionError(f"{kind}: a type this test does not check")


def choices(option: str) -> list[str]:
    """The choices of a ``list(...)`` option of config.yaml."""
    match = re.fullmatch(RE_SCHEMA_ELEMENT, CONFIG["schema"][option])
    assert match and match["list"], CONFIG["schema"][option]
    return match["list"].split("|")


# --------------------------------------------------------------------------- the files


def test_config_yaml_follows_the_supervisors_schema() -> None:
    validate(CONFIG, ADDON_CONFIG_SCHEMA)


def test_build_yaml_follows_the_supervisors_schema() -> None:
    validate(BUILD, BUILD_SCHEMA)


def test_repository_yaml_follows_the_supervisors_schema() -> None:
    validate(REPOSITORY, REPOSITORY_SCHEMA)


def test_translations_follow_the_supervisors_schema() -> None:
    validate(TRANSLATIONS, TRANSLATION_SCHEMA)


@pytest.mark.parametrize(
    ("document", "schema", "breaks"),
    [
        (CONFIG, ADDON_CONFIG_SCHEMA, {"slug": "wyoming openai"}),
        (CONFIG, ADDON_CONFIG_SCHEMA, {"version": "v1"}),
        (CONFIG, ADDON_CONFIG_SCHEMA, {"arch": ["amd64", "arm64"]}),
        (CONFIG, ADDON_CONFIG_SCHEMA, {"schema": {"tts_speed": "number"}}),
        (CONFIG, ADDON_CONFIG_SCHEMA, {"ports": {"10300": "10300"}}),
        (CONFIG, ADDON_CONFIG_SCHEMA, {"discovry": ["wyoming"]}),
        (BUILD, BUILD_SCHEMA, {"build_from": {"arm64": "ghcr.io/x/y:z"}}),
        (REPOSITORY, REPOSITORY_SCHEMA, {"maintainers": "x"}),
        (TRANSLATIONS, TRANSLATION_SCHEMA, {"configuration": {"engine": {"title": "x"}}}),
    ],
)
def test_the_schemas_refuse_what_the_supervisor_refuses(
    document: dict[str, Any], schema: dict[str, Any], breaks: dict[str, Any]
) -> None:
    with pytest.raises(AssertionError):
        validate({**document, **breaks}, schema)


def test_config_yaml_as_the_issue_asks() -> None:
    assert CONFIG["arch"] == ["amd64", "aarch64"]
    assert CONFIG["init"] is False
    assert CONFIG["discovery"] == ["wyoming"]
    # Off the host: Home Assistant reaches 10300 inside the Supervisor's network; the web
    # face gets a host port only if the user sets one.
    assert CONFIG["ports"] == {"10300/tcp": None, "10301/tcp": None}
    assert "homeassistant" in CONFIG
    assert "image" not in CONFIG  # built on the device from this folder (see build.yaml)
    assert CONFIG["schema"]["openai_api_key"].startswith("password")


def test_version_is_the_packages() -> None:
    assert CONFIG["version"] == __version__
    changelog = (ADDON / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {__version__}\n" in changelog


def test_every_schema_key_has_a_translation_and_a_default() -> None:
    schema, options = CONFIG["schema"], CONFIG["options"]
    translated = TRANSLATIONS["configuration"]
    assert set(translated) == set(schema)
    for key, kind in schema.items():
        assert translated[key]["name"] and translated[key]["description"], key
        assert key in options or kind.endswith("?"), f"{key}: no default and not optional"
    assert set(options) <= set(schema)
    for key, value in options.items():
        check_option(schema[key], value)  # as the Supervisor checks them at start
    assert set(TRANSLATIONS["network"]) == set(CONFIG["ports"])


def test_the_options_are_the_entry_points() -> None:
    assert set(CONFIG["schema"]) == set(OPTIONS)


def test_docs_explain_every_option() -> None:
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    for option in CONFIG["schema"]:
        assert f"`{option}`" in docs, option
    for topic in ("2027-01-06", "2027-02-26", "Fallback", "10301", "Wyoming Protocol"):
        assert topic in docs, topic


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_icon_is_square_and_logo_is_a_png() -> None:
    width, height = png_size(ADDON / "icon.png")
    assert width == height >= 128
    width, height = png_size(ADDON / "logo.png")
    assert width > height > 0


def test_repository_url_is_the_readmes() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Install on Home Assistant OS" in readme
    headings = re.findall(r"^## (Install .*)$", readme, flags=re.MULTILINE)
    assert headings[0] == "Install on Home Assistant OS", headings
    assert f"`{REPOSITORY['url']}`" in readme
    assert CONFIG["url"].startswith(REPOSITORY["url"] + "/")
    assert BUILD["args"]["WYOMING_OPENAI_REPOSITORY"] == REPOSITORY["url"]


# --------------------------------------------------------------------------- the catalogue


def literal_choices(model: Any, name: str) -> list[str]:
    return list(typing.get_args(model.model_fields[name].annotation))


def test_choices_come_from_the_catalogue_and_the_settings() -> None:
    """The lists Home Assistant shows are the server's: a voice, language, engine or log
    level added or removed in the code must be added or removed here too."""
    assert choices("tts_voice") == list(OPENAI_VOICES)
    assert choices("stt_language") == list(WHISPER_LANGUAGES)
    assert choices("engine") == literal_choices(Settings, "engine")
    assert choices("fallback") == literal_choices(Settings, "fallback")
    assert choices("log_level") == literal_choices(Settings, "log_level")


def test_defaults_and_bounds_are_the_settings() -> None:
    options = CONFIG["options"]
    settings = load_addon_settings({}, {})
    assert options["engine"] == settings.engine
    assert options["fallback"] == settings.fallback
    assert options["tts_voice"] == settings.tts.voice
    assert options["tts_speed"] == settings.tts.speed
    assert options["log_level"] == settings.log_level
    # Empty model options follow the catalogue's current models, named in the form.
    assert options["stt_model"] == options["tts_model"] == ""
    tts_model = TtsSettings.model_fields["model"].default
    assert DEFAULT_MODELS["realtime"] in TRANSLATIONS["configuration"]["stt_model"]["description"]
    assert tts_model in TRANSLATIONS["configuration"]["tts_model"]["description"]
    speed = TtsSettings.model_fields["speed"].metadata
    low = next(m.ge for m in speed if hasattr(m, "ge"))
    high = next(m.le for m in speed if hasattr(m, "le"))
    assert CONFIG["schema"]["tts_speed"] == f"float({low},{high})"


# --------------------------------------------------------------------------- the image


def instructions() -> list[tuple[str, str]]:
    parser = DockerfileParser(path=str(ADDON / "Dockerfile"))
    steps = [(item["instruction"], item["value"]) for item in parser.structure]
    return [(kind, value) for kind, value in steps if kind != "COMMENT"]


DEBIAN_BOOKWORM_PYTHON = "3.11"
"""Debian 12's python3 (3.11.2), the add-on's Python on Home Assistant's bookworm bases."""


def test_dockerfile_builds_from_the_supervisors_base() -> None:
    steps = instructions()
    assert steps[0] == ("ARG", "BUILD_FROM")
    assert steps[1] == ("FROM", "$BUILD_FROM")
    assert ("ARG", "BUILD_VERSION") in steps
    for arch in CONFIG["arch"]:
        assert BUILD["build_from"][arch] == f"ghcr.io/home-assistant/{arch}-base-debian:bookworm"
    assert set(BUILD["build_from"]) == set(CONFIG["arch"])


def test_check_wheels_covers_the_addons_python() -> None:
    """Home Assistant's bookworm bases run Debian's python3, the image's Python too: the
    wheels script/check-wheels resolves (for the image's PYTHON_VERSION on glibc 2.36) are
    the add-on's."""
    namespace = runpy.run_path(str(ROOT / "script" / "check-wheels"), run_name="check_wheels")
    assert namespace["image_python_version"]() == DEBIAN_BOOKWORM_PYTHON
    assert namespace["BOOKWORM_GLIBC"] == "2.36"
    assert namespace["requirements"](["local"])  # the add-on's extra exists


def test_dockerfile_installs_wheels_only_with_the_local_engines() -> None:
    runs = [value for kind, value in instructions() if kind == "RUN"]
    installs = [
        part.strip()
        for run in runs
        for part in run.split("&&")
        if "pip install" in part and "--upgrade pip" not in part
    ]
    assert installs and all("--only-binary :all:" in command for command in installs), installs
    assert any("[local]" in command for command in installs)
    apt = [part for run in runs for part in run.split("&&") if "apt-get install" in part]
    assert apt and all(
        not re.search(r"\b(gcc|g\+\+|build-essential|python3-dev|make|cmake|cargo)\b", p)
        for p in apt
    )
    # The release's source is fetched by tag when no wheel was put in wheels/.
    fetch = " ".join(runs)
    assert "${WYOMING_OPENAI_REPOSITORY}/archive/refs/tags/v${BUILD_VERSION}.tar.gz" in fetch
    assert "pip wheel --no-deps" in fetch


def test_dockerfile_runs_the_addon_entry_point() -> None:
    steps = dict(instructions())
    assert json.loads(steps["ENTRYPOINT"]) == ["python", "-m", "wyoming_openai.addon"]
    assert "wyoming_openai.health" in steps["HEALTHCHECK"]
    assert steps["EXPOSE"].split() == [port.split("/")[0] for port in CONFIG["ports"]]
    for kind, value in instructions():
        if kind == "COPY":
            for source in value.split()[:-1]:
                assert (ADDON / source).exists(), source  # the build context is the folder


@pytest.mark.slow
def test_build_addon_puts_the_wheel_the_dockerfile_expects(tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(
        [str(ROOT / "script" / "build-addon"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name == f"wyoming_openai-{CONFIG['version']}-py3-none-any.whl"


# --------------------------------------------------------------------------- options -> settings

MAPPING: list[tuple[str, Any, Callable[[Settings], Any], Any]] = [
    ("openai_api_key", "sk-addon", lambda s: s.api_key(), "sk-addon"),
    ("engine", "local", lambda s: s.engine, "local"),
    ("fallback", "none", lambda s: s.fallback, "none"),
    ("stt_model", "gpt-transcribe", lambda s: s.stt.model, "gpt-transcribe"),
    ("stt_language", "de", lambda s: s.stt.language, "de"),
    ("tts_voice", "nova", lambda s: s.tts.voice, "nova"),
    ("tts_model", "tts-1", lambda s: s.tts.model, "tts-1"),
    ("tts_instructions", "Calm.", lambda s: s.tts.instructions, "Calm."),
    ("tts_speed", 1.5, lambda s: s.tts.speed, 1.5),
    ("log_level", "DEBUG", lambda s: s.log_level, "DEBUG"),
]


def test_the_mapping_covers_every_option() -> None:
    assert [option for option, *_ in MAPPING] == list(OPTIONS)


@pytest.mark.parametrize(("option", "value", "read", "expected"), MAPPING)
def test_each_option_sets_its_setting(
    option: str, value: Any, read: Callable[[Settings], Any], expected: Any
) -> None:
    settings = load_addon_settings({option: value}, {})
    assert read(settings) == expected
    section, _, key = OPTIONS[option].rpartition(".")
    tree = settings_tree({option: value})
    assert (tree[section] if section else tree)[key] == value


@pytest.mark.parametrize("empty", ["", None])
def test_an_empty_option_leaves_the_default(empty: str | None) -> None:
    settings = load_addon_settings({option: empty for option in OPTIONS}, {})
    assert settings.openai.api_key is None
    assert settings.stt.model == DEFAULT_MODELS["realtime"]
    assert settings.stt.language is None
    assert settings.tts.model == TtsSettings.model_fields["model"].default
    assert settings.tts.instructions == ""


def test_the_addon_listens_everywhere_without_zeroconf() -> None:
    settings = load_addon_settings(CONFIG["options"], {})
    assert settings.uri == ADDON_DEFAULTS["uri"] == "tcp://0.0.0.0:10300"
    assert settings.web.uri == ADDON_DEFAULTS["web"]["uri"] == "http://0.0.0.0:10301"
    assert settings.web.enabled
    assert not settings.zeroconf.enabled
    assert [f"{p}/tcp" for p in (10300, 10301)] == list(CONFIG["ports"])
    # The health check of the image (no WYOMING_OPENAI_URI there) probes the same port.
    assert client_uri(settings.uri) == "tcp://127.0.0.1:10300"


def test_options_win_over_the_environment_which_sets_the_rest() -> None:
    environ = {
        "WYOMING_OPENAI_TTS_VOICE": "echo",  # an option: the option wins
        "WYOMING_OPENAI_URI": "tcp://127.0.0.1:12345",  # not an option: the environment
        "WYOMING_OPENAI_WEB_ENABLED": "false",
        "WYOMING_OPENAI_ZEROCONF_ENABLED": "true",  # fixed by the add-on
    }
    settings = load_addon_settings({"tts_voice": "nova"}, environ)
    assert settings.tts.voice == "nova"
    assert settings.uri == "tcp://127.0.0.1:12345"
    assert not settings.web.enabled
    assert not settings.zeroconf.enabled


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"tts_speed": 9},
            "tts.speed: Input should be less than or equal to 4 (add-on option tts_speed)",
        ),
        ({"engine": "cloud"}, "(add-on option engine)"),
        ({"log_level": "LOUD"}, "(add-on option log_level)"),
        ({"engine": "openai"}, "openai_api_key: missing (add-on option engine: openai)"),
        ({"volume": 3}, "volume: unknown add-on option"),
    ],
)
def test_a_bad_option_is_one_line_naming_it(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_addon_settings(options, {})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_options_file_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "options.json"
    with pytest.raises(ConfigError, match="add-on options: cannot read"):
        read_options(missing)
    missing.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        read_options(missing)
    missing.write_text("[]")
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        read_options(missing)


def test_addon_environment() -> None:
    inside = addon_environment({"SUPERVISOR_TOKEN": "abc"})
    assert inside.options_file == Path("/data/options.json")
    assert inside.supervisor_url == "http://supervisor"
    assert inside.supervisor_token is not None
    assert inside.supervisor_token.get_secret_value() == "abc"
    assert "abc" not in repr(inside)
    outside = addon_environment(
        {
            "WYOMING_OPENAI_ADDON_OPTIONS": "/tmp/o.json",
            "WYOMING_OPENAI_SUPERVISOR_URL": "http://127.0.0.1:9/",
        }
    )
    assert outside.supervisor_token is None
    assert outside.options_file == Path("/tmp/o.json")
    assert outside.supervisor_url == "http://127.0.0.1:9"


# --------------------------------------------------------------------------- the Supervisor

TOKEN = "0123456789abcdef0123456789abcdef"


@dataclass
class FakeSupervisor:
    """``POST /discovery`` as the Supervisor answers it; ``statuses`` are answered in turn
    (the last one for every later request)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    requests: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/discovery", self._discovery)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _discovery(self, request: web.Request) -> web.Response:
        body = await request.json()
        record = {"authorization": request.headers.get("Authorization"), "body": body}
        self.requests.append(record)
        status = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        if status >= 500:
            return web.Response(status=status, text="Bad Gateway")
        if status >= 400:
            answer = {"result": "error", "message": "Add-ons must list services they provide"}
            return web.json_response(answer, status=status)
        self.accepted.append(record)
        return web.json_response({"result": "ok", "data": {"uuid": "f" * 32}})


@pytest.fixture
async def supervisor() -> AsyncIterator[FakeSupervisor]:
    fake = FakeSupervisor()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


class Sleeps:
    """A stand-in for ``asyncio.sleep`` that records the delays and waits for none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def test_backoff_doubles_up_to_30_seconds() -> None:
    assert list(islice(backoff_delays(), 8)) == [1, 2, 4, 8, 16, 30, 30, 30]


def test_discovery_message() -> None:
    assert discovery_message(10300, "a1b2c3d4-wyoming-openai") == {
        "service": "wyoming",
        "config": {"uri": "tcp://a1b2c3d4-wyoming-openai:10300"},
    }
    assert discovery_message(10300)["config"]["uri"] == f"tcp://{socket.gethostname()}:10300"


async def test_a_supervisor_answering_502_twice_is_retried(supervisor: FakeSupervisor) -> None:
    supervisor.statuses = [502, 502, 200]
    sleeps = Sleeps()
    message = discovery_message(10300, "addon")
    uuid = await post_discovery(supervisor.url, TOKEN, message, sleeps)
    assert uuid == "f" * 32
    assert len(supervisor.requests) == 3 and len(supervisor.accepted) == 1
    assert sleeps.delays == [1, 2]
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in supervisor.requests)
    assert supervisor.accepted[0]["body"] == message


async def test_an_unreachable_supervisor_is_retried_with_backoff() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sleeps = Sleeps()

    async def stop_after_five(delay: float) -> None:
        await sleeps(delay)
        if len(sleeps.delays) == 5:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await post_discovery(closed, TOKEN, discovery_message(10300, "addon"), stop_after_five)
    assert sleeps.delays == [1, 2, 4, 8, 16]


async def test_a_refusal_is_not_repeated(supervisor: FakeSupervisor) -> None:
    supervisor.statuses = [403]
    sleeps = Sleeps()
    with pytest.raises(DiscoveryRefused, match="HTTP 403: Add-ons must list"):
        await post_discovery(supervisor.url, TOKEN, discovery_message(10300, "addon"), sleeps)
    assert len(supervisor.requests) == 1 and sleeps.delays == []


def environment(supervisor: FakeSupervisor | None, token: str | None = TOKEN) -> AddonEnvironment:
    return addon_environment(
        {
            **({"SUPERVISOR_TOKEN": token} if token else {}),
            "WYOMING_OPENAI_SUPERVISOR_URL": supervisor.url if supervisor else "http://127.0.0.1:9",
        }
    )


async def test_announce_waits_for_describe_then_posts_once(
    supervisor: FakeSupervisor,
    server: WyomingOpenAIServer,
    port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_addon_settings({}, {"WYOMING_OPENAI_URI": f"tcp://0.0.0.0:{port}"})
    caplog.set_level("INFO", logger="wyoming_openai.supervisor")
    await asyncio.wait_for(announce(settings, environment(supervisor)), 30)
    (request,) = supervisor.accepted
    assert request["body"] == {
        "service": "wyoming",
        "config": {"uri": f"tcp://{socket.gethostname()}:{port}"},
    }
    assert request["authorization"] == f"Bearer {TOKEN}"
    sent = [r for r in caplog.records if "Discovery: sent" in r.getMessage()]
    assert len(sent) == 1 and TOKEN not in caplog.text


async def test_announce_keeps_asking_until_the_server_answers(supervisor: FakeSupervisor) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    settings = load_addon_settings({}, {"WYOMING_OPENAI_URI": f"tcp://127.0.0.1:{free}"})
    sleeps = Sleeps()

    async def stop_after_three(delay: float) -> None:
        await sleeps(delay)
        if len(sleeps.delays) == 3:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await announce(settings, environment(supervisor), stop_after_three)
    assert sleeps.delays == [0.5, 0.5, 0.5] and supervisor.requests == []


async def test_outside_the_supervisor_nothing_is_sent(
    supervisor: FakeSupervisor, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_addon_settings({}, {})  # nothing listens on 10300 here: no wait either
    await asyncio.wait_for(announce(settings, environment(supervisor, token=None)), 1)
    assert supervisor.requests == [] and caplog.text == ""


async def test_a_refusal_is_logged_and_the_server_goes_on(
    supervisor: FakeSupervisor,
    server: WyomingOpenAIServer,
    port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor.statuses = [401]
    settings = load_addon_settings({}, {"WYOMING_OPENAI_URI": f"tcp://127.0.0.1:{port}"})
    await asyncio.wait_for(announce(settings, environment(supervisor)), 30)
    assert len(supervisor.requests) == 1
    (error,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "refused" in error.getMessage() and "HTTP 401" in error.getMessage()
    await check(f"tcp://127.0.0.1:{port}")  # still serving


# --------------------------------------------------------------------------- the entry point

START_TIMEOUT = 60.0  # s: process start, imports, first describe answered
EXIT_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_addon(
    tmp_path: Path, options: dict[str, Any], supervisor: FakeSupervisor, environ: dict[str, str]
) -> asyncio.subprocess.Process:
    """``python -m wyoming_openai.addon`` as the Supervisor starts it, with ``options``
    written to an options.json, and the test's addresses in the environment."""
    options_file = tmp_path / "options.json"
    options_file.write_text(json.dumps(options))
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wyoming_openai.addon",
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin"),
            "WYOMING_OPENAI_ADDON_OPTIONS": str(options_file),
            "SUPERVISOR_TOKEN": TOKEN,
            "WYOMING_OPENAI_SUPERVISOR_URL": supervisor.url,
            **environ,
        },
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.parametrize("statuses", [[200], [502, 502, 200]], ids=["ready", "502-twice"])
async def test_the_entry_point_serves_and_posts_one_discovery(
    tmp_path: Path, supervisor: FakeSupervisor, statuses: list[int]
) -> None:
    """The add-on as the Supervisor runs it: options.json in, the real server up (answering
    describe), exactly one discovery message accepted, with the right URI and token; then
    SIGTERM stops it cleanly."""
    supervisor.statuses = statuses
    port = free_port()
    options = {
        **CONFIG["options"],
        "openai_api_key": DEFAULT_API_KEY,
        "fallback": "none",  # the local models take seconds to load and are not needed here
        "tts_voice": "nova",
    }
    async with FakeOpenAI(api_key=DEFAULT_API_KEY) as fake:
        process = await start_addon(
            tmp_path,
            options,
            supervisor,
            {
                "OPENAI_BASE_URL": fake.base_url,
                "WYOMING_OPENAI_URI": f"tcp://127.0.0.1:{port}",
                "WYOMING_OPENAI_WEB_ENABLED": "false",  # the add-on's 10301 may be taken here
            },
        )
        try:
            await eventually(lambda: supervisor.accepted, START_TIMEOUT)
            info = await check(f"tcp://127.0.0.1:{port}")
            await asyncio.sleep(1.0)  # time for a second message, which must not come
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), EXIT_TIMEOUT)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    log = stderr.decode()
    assert process.returncode == 0, log
    assert len(supervisor.accepted) == 1
    assert len(supervisor.requests) == len(statuses)
    (request,) = supervisor.accepted
    assert request["body"] == {
        "service": "wyoming",
        "config": {"uri": f"tcp://{socket.gethostname()}:{port}"},
    }
    assert request["authorization"] == f"Bearer {TOKEN}"
    assert [voice.name for voice in info.tts[0].voices][:1]  # the real server answered
    assert log.count("Discovery: sent") == 1, log
    assert "Zeroconf" not in log and "Traceback" not in log, log
    assert TOKEN not in log and DEFAULT_API_KEY not in log


@pytest.mark.slow
async def test_a_bad_option_stops_the_entry_point_with_one_line(
    tmp_path: Path, supervisor: FakeSupervisor
) -> None:
    process = await start_addon(tmp_path, {**CONFIG["options"], "tts_speed": 9.0}, supervisor, {})
    _, stderr = await asyncio.wait_for(process.communicate(), START_TIMEOUT)
    assert process.returncode == 2
    assert stderr.decode().splitlines() == [
        "wyoming-openai: configuration error: tts.speed: Input should be less than or equal "
        "to 4 (add-on option tts_speed)"
    ]
    assert supervisor.requests == []
