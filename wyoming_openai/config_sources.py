"""Where settings come from: defaults < YAML config file < environment < command line.

Every setting has a dotted name (``stt.model``), a YAML key (``stt: {model: ...}``), an
environment variable (``WYOMING_OPENAI_STT_MODEL``) and a flag (``--stt-model``), all
derived from the same field of :class:`~wyoming_openai.config.Settings`, so they cannot
drift apart. The OpenAI SDK's own variables (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``,
``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID``) are read too. The API key has no flag: a flag
would show it in ``ps``.

The Home Assistant add-on (:mod:`wyoming_openai.addon`) hands its options over as a tree
of settings (:func:`load_settings_from_tree`): the same validation, the same one-line
errors. Nothing outside this module reads ``os.environ`` (the add-on's variables too:
:func:`addon_environment`).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

from .config import ENV_PREFIX, SECTIONS, Settings
from .errors import ConfigError

_LOGGER = logging.getLogger(__name__)

NO_FLAG = {"openai.api_key", "web.token"}
"""Settings that must not be given on the command line (visible in ``ps``)."""

FLAG_ALIASES = {"openai.api_key_file": ["--api-key-file"]}

RENAMED = {"tts.realtime_fallback": "tts.realtime_move"}
"""Old setting names that still work (file, environment, flag), with a one-line warning."""

SDK_ENV = {
    "openai.api_key": "OPENAI_API_KEY",
    "openai.base_url": "OPENAI_BASE_URL",
    "openai.organization": "OPENAI_ORG_ID",
    "openai.project": "OPENAI_PROJECT_ID",
}
"""The ``openai`` SDK's standard variables; the prefixed twin wins when both are set."""


def setting_names() -> list[str]:
    """Dotted names of every leaf setting, e.g. ``["uri", ..., "stt.model", ...]``."""
    names = [name for name in Settings.model_fields if name not in SECTIONS]
    for section, model in SECTIONS.items():
        names.extend(f"{section}.{key}" for key in model.model_fields)
    return names


def _field(name: str) -> Any:
    section, _, key = name.rpartition(".")
    model = SECTIONS[section] if section else Settings
    return model.model_fields[key]


def env_name(name: str) -> str:
    """``stt.model`` -> ``WYOMING_OPENAI_STT_MODEL``."""
    return ENV_PREFIX + name.replace(".", "_").upper()


def flag_name(name: str) -> str:
    """``stt.model`` -> ``--stt-model``."""
    return "--" + name.replace(".", "-").replace("_", "-")


def _is_list(name: str) -> bool:
    return "list[" in str(_field(name).annotation)


def _is_bool(name: str) -> bool:
    return _field(name).annotation is bool


def _set(tree: dict[str, Any], name: str, value: Any) -> None:
    section, _, key = name.rpartition(".")
    (tree.setdefault(section, {}) if section else tree)[key] = value


def _parse_text(name: str, text: str) -> Any:
    """A value from the environment or a flag: lists are comma-separated."""
    if _is_list(name):
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


# --------------------------------------------------------------------------- sources


def build_arg_parser() -> argparse.ArgumentParser:
    """The command-line parser: one flag per setting (values stay unparsed strings)."""
    parser = argparse.ArgumentParser(
        prog="wyoming-openai",
        description="Wyoming server for OpenAI speech to text and text to speech.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--config", metavar="PATH", help=f"YAML config file (env {ENV_PREFIX}CONFIG)."
    )
    for name in setting_names():
        if name in NO_FLAG:
            continue
        info = _field(name)
        flags = [flag_name(name), *FLAG_ALIASES.get(name, [])]
        help_text = f"{info.description} (env {env_name(name)})"
        if _is_bool(name):
            parser.add_argument(*flags, dest=name, action="store_true", help=help_text)
        else:
            metavar = "A,B,..." if _is_list(name) else "VALUE"
            parser.add_argument(*flags, dest=name, metavar=metavar, help=help_text)
    for old, new in RENAMED.items():
        action = "store_true" if _is_bool(new) else "store"
        parser.add_argument(flag_name(old), dest=old, action=action, help=argparse.SUPPRESS)
    _add_zeroconf_flags(parser)
    return parser


def _renamed(name: str, where: str) -> str:
    """The current name of setting ``name``, warning once when ``name`` is an old one."""
    new = RENAMED.get(name)
    if new is None:
        return name
    _LOGGER.warning("%s: renamed to %s; the old name still works for now (%s)", name, new, where)
    return new


class _ZeroconfFlag(argparse.Action):
    """``--zeroconf [NAME]``: advertise (wyoming-piper's flag), optionally as NAME."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        setattr(namespace, "zeroconf.enabled", True)
        if values:
            setattr(namespace, "zeroconf.name", values)


def _add_zeroconf_flags(parser: argparse.ArgumentParser) -> None:
    """The short zeroconf flags, beside the generated ``--zeroconf-*`` ones."""
    parser.add_argument(
        "--zeroconf",
        nargs="?",
        metavar="NAME",
        action=_ZeroconfFlag,
        help="Advertise over zeroconf (the default for tcp://), as NAME if given.",
    )
    parser.add_argument(
        "--no-web",
        dest="web.enabled",
        action="store_false",
        help=f"Do not serve the web face (env {env_name('web.enabled')}=false).",
    )
    parser.add_argument(
        "--no-zeroconf",
        dest="zeroconf.enabled",
        action="store_false",
        help=f"Do not advertise over zeroconf (env {env_name('zeroconf.enabled')}=false).",
    )


Origin = str | Callable[[str], str]
"""Where values came from, for messages: one text, or one per dotted setting name."""


def _flatten(tree: Mapping[str, Any], origin: Origin) -> dict[str, tuple[Any, str]]:
    """YAML tree -> ``{dotted name: (value, origin)}``; unknown keys raise ConfigError."""

    def where(name: str) -> str:
        return origin if isinstance(origin, str) else origin(name)

    flat: dict[str, tuple[Any, str]] = {}
    known = set(setting_names())
    for key, value in tree.items():
        if key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key}: must be a mapping of settings ({where(key)})")
            for sub, sub_value in value.items():
                name = _renamed(f"{key}.{sub}", where(f"{key}.{sub}"))
                if name not in known:
                    raise ConfigError(f"{name}: unknown setting ({where(name)})")
                flat[name] = (sub_value, where(name))
        elif key in known:
            flat[key] = (value, where(key))
        else:
            raise ConfigError(f"{key}: unknown setting ({where(key)})")
    return flat


def _read_yaml(path: Path) -> dict[str, tuple[Any, str]]:
    origin = f"config file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"config: cannot read {path}: {err.strerror}") from err
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config: {path} is not valid YAML{where}") from err
    if tree is None:
        return {}
    if not isinstance(tree, Mapping):
        raise ConfigError(f"config: {path} must hold a mapping of settings")
    return _flatten(tree, origin)


def _read_env(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    flat: dict[str, tuple[Any, str]] = {}
    for old, new in RENAMED.items():
        old_var = env_name(old)
        if environ.get(old_var, "") != "":
            origin = f"environment {old_var}"
            flat[_renamed(old, origin)] = (_parse_text(new, environ[old_var]), origin)
    for name in setting_names():
        for var in (SDK_ENV.get(name), env_name(name)):  # prefixed twin last: it wins
            if var and environ.get(var, "") != "":
                text = environ[var]
                value: Any = _parse_text(name, text)
                flat[name] = (value, f"environment {var}")
    return flat


def _read_args(args: argparse.Namespace) -> dict[str, tuple[Any, str]]:
    flat: dict[str, tuple[Any, str]] = {}
    for name, value in vars(args).items():
        if name == "config":
            continue
        origin = f"flag {flag_name(name)}"
        name = _renamed(name, origin)
        parsed = value if isinstance(value, bool) else _parse_text(name, value)
        flat[name] = (parsed, origin)
    return flat


def configured_uri(environ: Mapping[str, str] | None = None) -> str:
    """``uri`` as the environment and the config file set it (not the command line).

    For a client of the server started with the same environment, e.g. the Docker
    health check. Nothing else is validated.

    Raises:
        ConfigError: the config file cannot be read, is not valid YAML or names an
            unknown setting.
    """
    environ = os.environ if environ is None else environ
    if environ.get(env_name("uri")):
        return environ[env_name("uri")]
    config_path = environ.get(f"{ENV_PREFIX}CONFIG")
    if config_path:
        from_file = _read_yaml(Path(config_path)).get("uri")
        if from_file is not None:
            return str(from_file[0])
    return str(Settings.model_fields["uri"].default)


ADDON_OPTIONS_FILE = Path("/data/options.json")
"""Where the Supervisor writes a Home Assistant add-on's options, as JSON."""

SUPERVISOR_URL = "http://supervisor"
"""The Supervisor's API, as an add-on reaches it."""


@dataclass(frozen=True)
class AddonEnvironment:
    """What the Supervisor gives an add-on's container besides the settings.

    Attributes:
        options_file: the options (``/data/options.json``; ``WYOMING_OPENAI_ADDON_OPTIONS``
            names another file, for tests).
        supervisor_token: ``SUPERVISOR_TOKEN``, for the Supervisor's API; None outside
            the Supervisor.
        supervisor_url: the Supervisor's API (``WYOMING_OPENAI_SUPERVISOR_URL`` names
            another, for tests).
    """

    options_file: Path
    supervisor_token: SecretStr | None
    supervisor_url: str


def addon_environment(environ: Mapping[str, str] | None = None) -> AddonEnvironment:
    """The add-on's :class:`AddonEnvironment` from ``environ`` (default ``os.environ``)."""
    environ = os.environ if environ is None else environ
    token = environ.get("SUPERVISOR_TOKEN", "")
    return AddonEnvironment(
        options_file=Path(environ.get(f"{ENV_PREFIX}ADDON_OPTIONS") or ADDON_OPTIONS_FILE),
        supervisor_token=SecretStr(token) if token else None,
        supervisor_url=(environ.get(f"{ENV_PREFIX}SUPERVISOR_URL") or SUPERVISOR_URL).rstrip("/"),
    )


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build :class:`Settings` from defaults, config file, environment and ``argv``.

    Args:
        argv: command-line arguments without the program name (default ``sys.argv[1:]``).
        environ: the environment (default ``os.environ``).

    Raises:
        ConfigError: one line naming the bad setting and where its value came from.
        SystemExit: for ``--help`` or an unknown flag (argparse's own handling).
    """
    environ = os.environ if environ is None else environ
    args = build_arg_parser().parse_args(argv)

    config_path = getattr(args, "config", None) or environ.get(f"{ENV_PREFIX}CONFIG")
    layers: dict[str, tuple[Any, str]] = {}
    if config_path:
        layers.update(_read_yaml(Path(config_path)))
    layers.update(_read_env(environ))
    layers.update(_read_args(args))
    return _validate(layers)


def load_settings_from_tree(
    tree: Mapping[str, Any],
    origin: Origin,
    *,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Settings:
    """Build :class:`Settings` from a tree of settings another program holds (the shape
    of the config file), e.g. the Home Assistant add-on's options.

    Precedence: the settings' defaults < ``defaults`` < the environment < ``tree``: the
    tree is authoritative for the settings it names, the environment still sets the rest.
    No config file and no command line are read.

    Args:
        tree: ``{"engine": ..., "tts": {"voice": ...}, ...}``.
        origin: where the tree's values came from, for messages; a function of the dotted
            setting name gives each its own (``"add-on option tts_speed"``).
        environ: the environment (default ``os.environ``).
        defaults: the caller's own defaults (same shape), below the environment.

    Raises:
        ConfigError: one line naming the bad setting and where its value came from.
    """
    environ = os.environ if environ is None else environ
    layers: dict[str, tuple[Any, str]] = {}
    if defaults:
        layers.update(_flatten(defaults, "default"))
    layers.update(_read_env(environ))
    layers.update(_flatten(tree, origin))
    return _validate(layers)


def _validate(layers: Mapping[str, tuple[Any, str]]) -> Settings:
    """``{dotted name: (value, origin)}`` -> :class:`Settings`, with secret files read."""
    tree: dict[str, Any] = {}
    for name, (value, _origin) in layers.items():
        _set(tree, name, value)

    try:
        settings = Settings.model_validate(tree)
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(part) for part in first["loc"]]
        name = ".".join(part for part in loc if not part.isdigit())
        origin = layers.get(name, (None, "default"))[1]
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message} ({origin})") from None

    return _resolve_secret_files(settings)


def _read_secret_file(name: str, path: Path) -> SecretStr:
    """The secret held in ``path`` (setting ``name``, for the message), stripped."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"{name}: cannot read {path}: {err.strerror}") from err
    if not secret:
        raise ConfigError(f"{name}: {path} is empty")
    return SecretStr(secret)


def _resolve_secret_files(settings: Settings) -> Settings:
    """Read ``openai.api_key_file`` and ``web.token_file`` where the secret itself is unset."""
    if settings.openai.api_key is None and settings.openai.api_key_file is not None:
        key = _read_secret_file("openai.api_key_file", settings.openai.api_key_file)
        openai = settings.openai.model_copy(update={"api_key": key})
        settings = settings.model_copy(update={"openai": openai})
    if settings.web.token is None and settings.web.token_file is not None:
        token = _read_secret_file("web.token_file", settings.web.token_file)
        settings = settings.model_copy(
            update={"web": settings.web.model_copy(update={"token": token})}
        )
    if settings.engine == "openai" and not settings.has_api_key():
        raise ConfigError(
            "openai.api_key: missing (engine: openai); set OPENAI_API_KEY, openai.api_key in "
            "the config file, or --api-key-file"
        )
    return settings
