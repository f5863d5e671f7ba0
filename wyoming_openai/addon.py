"""The Home Assistant OS add-on's entry point: ``python -m wyoming_openai.addon``.

The Supervisor writes the options of the add-on's form to ``/data/options.json``. Each
option is one of the project's settings (:data:`OPTIONS`); they are validated by the
project's own loader (:func:`~wyoming_openai.config_sources.load_settings_from_tree`), so a
bad option stops start-up with the same one-line error as a bad setting (exit code 2),
which the add-on's Log tab shows. Then the server runs as ``wyoming-openai`` does, with
zeroconf off (the add-on's container is not on the home network), and once it answers
``describe`` it is announced to Home Assistant through the Supervisor
(:mod:`wyoming_openai.supervisor`).

Where it listens (:data:`ADDON_DEFAULTS`): Wyoming on ``tcp://0.0.0.0:10300``, which Home
Assistant reaches at the add-on's host name on the Supervisor's network, and the web face on
``http://0.0.0.0:10301``, which leaves that network only if the user gives it a host port.
Precedence: the settings' defaults < :data:`ADDON_DEFAULTS` < the environment < the
options (and zeroconf off); the options decide every setting they name.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .__main__ import configuration_error, run_server
from .config import Settings
from .config_sources import addon_environment, load_settings_from_tree
from .errors import ConfigError
from .redact import register_secret

OPTIONS: dict[str, str] = {
    "openai_api_key": "openai.api_key",
    "engine": "engine",
    "fallback": "fallback",
    "stt_model": "stt.model",
    "stt_language": "stt.language",
    "tts_voice": "tts.voice",
    "tts_model": "tts.model",
    "tts_instructions": "tts.instructions",
    "tts_speed": "tts.speed",
    "log_level": "log_level",
}
"""Add-on option -> the dotted setting it sets (``wyoming_openai_addon/config.yaml``'s
schema lists the same options)."""

ADDON_DEFAULTS: dict[str, Any] = {
    "uri": "tcp://0.0.0.0:10300",
    "web": {"uri": "http://0.0.0.0:10301"},
}
"""Where the add-on listens: every interface of its container (ports 10300 and 10301 of
``config.yaml``)."""

ADDON_FIXED: dict[str, Any] = {"zeroconf": {"enabled": False}}
"""Settings no option or variable changes: Home Assistant discovers the add-on through the
Supervisor, and mDNS from the container would advertise addresses only the Supervisor's
network reaches."""

_SETTING_OPTION = {setting: option for option, setting in OPTIONS.items()}


def read_options(path: Path) -> dict[str, Any]:
    """The options the Supervisor wrote to ``path`` (a JSON object).

    Raises:
        ConfigError: the file cannot be read, is not JSON, or holds no object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"add-on options: cannot read {path}: {err.strerror}") from err
    try:
        options = json.loads(text)
    except ValueError:
        raise ConfigError(f"add-on options: {path} is not valid JSON") from None
    if not isinstance(options, dict):
        raise ConfigError(f"add-on options: {path} must hold a JSON object")
    return options


def settings_tree(options: Mapping[str, Any]) -> dict[str, Any]:
    """The add-on's options as a tree of settings (the config file's shape), with
    :data:`ADDON_FIXED`. An empty option (``""`` or null) leaves its setting at its default
    (``stt_model`` empty: the current model of :data:`.catalogue.DEFAULT_MODELS`).

    Raises:
        ConfigError: an option the add-on does not have.
    """
    tree: dict[str, Any] = {}
    for option, value in options.items():
        if option not in OPTIONS:
            raise ConfigError(
                f"{option}: unknown add-on option (the add-on has {', '.join(OPTIONS)})"
            )
        if value is None or value == "":
            continue
        section, _, key = OPTIONS[option].rpartition(".")
        (tree.setdefault(section, {}) if section else tree)[key] = value
    for section, values in ADDON_FIXED.items():
        tree.setdefault(section, {}).update(values)
    return tree


def option_origin(setting: str) -> str:
    """Where a setting of :func:`settings_tree` came from, for messages."""
    option = _SETTING_OPTION.get(setting)
    return f"add-on option {option}" if option else "fixed by the add-on"


def load_addon_settings(
    options: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Settings:
    """Validated settings from the add-on's options (see the module docstring).

    Raises:
        ConfigError: one line naming the bad option.
    """
    try:
        return load_settings_from_tree(
            settings_tree(options), option_origin, environ=environ, defaults=ADDON_DEFAULTS
        )
    except ConfigError as err:
        if str(err).startswith("openai.api_key: missing"):  # the loader's words for the CLI
            raise ConfigError(
                "openai_api_key: missing (add-on option engine: openai); type your OpenAI "
                "API key in the Configuration tab, or choose engine auto or local"
            ) from None
        raise


async def main(environ: Mapping[str, str] | None = None) -> int:
    """Read the options, serve, announce. Returns the exit code (2: a bad option)."""
    from .plan import plan_engines  # imports neither the SDK nor the local engines
    from .supervisor import announce

    environment = addon_environment(environ)
    try:
        settings = load_addon_settings(read_options(environment.options_file), environ)
        plan = plan_engines(settings)
    except ConfigError as err:
        return configuration_error(err)
    if environment.supervisor_token is not None:
        register_secret(environment.supervisor_token.get_secret_value())

    async def discovery(settings: Settings) -> None:
        await announce(settings, environment)

    return await run_server(settings, plan, alongside=discovery)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run() -> None:
    """Process entry point. In the add-on's container this process is PID 1, which the
    kernel sends no signal it has no handler for: SIGTERM (the Supervisor stopping the
    add-on) exits at once until the server installs its own handler, which stops cleanly."""
    signal.signal(signal.SIGTERM, _stop)
    sys.exit(asyncio.run(main()))


if __name__ == "__main__":
    run()
