"""The one place that builds the engines: :class:`Settings` in, :class:`Engines` out.

Every face (the Wyoming server, and any other door onto the same process) serves with the
engines built here, shared by all its connections:

- speech to text: ``stt.mode`` ``realtime`` (:class:`RealtimeSttEngine`) or ``http``
  (:class:`HttpSttEngine`); or faster-whisper on its own;
- text to speech: ``tts.mode`` ``speech`` (``/v1/audio/speech``), ``realtime`` (the
  Realtime API) or ``auto`` (speech until the service retires the model, then the move to
  realtime); or Piper on its own;
- with ``fallback: local``, each OpenAI engine wrapped so that its local twin answers
  during an outage; the realtime engines' warm-session pools tell that wrapper's
  :class:`LocalHold` when OpenAI cannot be reached, so the next request goes local at once
  (the transcription pool tells speech too, unless speech has its own realtime pool).

What serves is decided by :func:`wyoming_openai.plan.plan_engines`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlparse

from openai import AsyncOpenAI

from .config import Settings
from .errors import BridgeError
from .fallback import LocalHold
from .hedge import LatencyTracker
from .metrics import Kind
from .openai_client import make_client
from .plan import EnginePlan, plan_engines
from .retry import RetryPolicy
from .stt.base import SttEngine
from .stt.fallback import FallbackSttEngine
from .stt.local_whisper import LocalWhisperEngine
from .stt.openai_http import HttpSttEngine
from .stt.realtime import RealtimeSttEngine
from .tts.auto import AutoTtsEngine
from .tts.base import TtsEngine
from .tts.fallback import FallbackTtsEngine
from .tts.openai_speech import OpenAISpeechEngine
from .tts.piper_tts import PiperTtsEngine
from .tts.realtime import RealtimeSpeechEngine
from .warm import Health

_LOGGER = logging.getLogger(__name__)

OPENAI_API_HOST = "api.openai.com"
"""OpenAI's API host; regional hosts (``us.api.openai.com``, ...) are its subdomains."""


def is_openai_base_url(base_url: str) -> bool:
    """Whether ``base_url`` is OpenAI's own API (``api.openai.com`` or a regional
    ``*.api.openai.com``), not an OpenAI-compatible server."""
    host = (urlparse(base_url).hostname or "").lower().rstrip(".")
    return host == OPENAI_API_HOST or host.endswith("." + OPENAI_API_HOST)


@dataclass
class Engines:
    """The engines of the process, shared by every face and connection.

    Attributes:
        plan: who serves, and whether the local engines cover OpenAI.
        stt: the speech-to-text engine.
        tts: the text-to-speech engine.
        client: the SDK client the OpenAI engines use (None when only local engines serve).
    """

    plan: EnginePlan
    stt: SttEngine
    tts: TtsEngine
    client: AsyncOpenAI | None = None

    async def prepare(self) -> None:
        """Load the local models (off the event loop) and open warm sessions.

        Raises:
            ConfigError: a model or voice cannot be loaded.
        """
        await self.stt.prepare()
        await self.tts.prepare()

    async def aclose(self) -> None:
        """Close every upstream session, then the SDK client."""
        await self.stt.aclose()
        await self.tts.aclose()
        if self.client is not None:
            await self.client.close()


def build_engines(settings: Settings, plan: EnginePlan | None = None) -> Engines:
    """The engines ``settings`` ask for (``plan``: see :func:`plan_engines`, planned here
    when not given). Logs the plan in one line.

    Raises:
        ConfigError: the local engines are needed but not installed, or a local model or
            voice path is wrong.
    """
    plan = plan or plan_engines(settings)
    plan.log()
    if plan.serving == "local":
        return Engines(
            plan, LocalWhisperEngine(settings.local, settings.stt), PiperTtsEngine(settings.local)
        )
    client = make_client(settings.openai)
    hold = settings.fallback_retry_after
    stt_hold = LocalHold("transcription", hold) if plan.fallback else None
    tts_hold = LocalHold("speech", hold) if plan.fallback else None
    stt_health: Health | None = stt_hold
    if stt_hold is not None and tts_hold is not None and settings.tts.mode != "realtime":
        # Speech over HTTP has no pool of its own: the transcription pool, on the same
        # service, tells it too, so a reply during an outage does not wait for a connect.
        stt_health = _Holds(stt_hold, tts_hold)
    stt = _openai_stt(client, settings, stt_health)
    tts = _openai_tts(client, settings, tts_hold)
    if stt_hold is not None and tts_hold is not None:
        stt = FallbackSttEngine(stt, LocalWhisperEngine(settings.local, settings.stt), stt_hold)
        tts = FallbackTtsEngine(
            tts,
            PiperTtsEngine(settings.local, output_format=tts.output_format),
            tts_hold,
            LatencyTracker.from_settings("speech first audio", settings.openai),
        )
    return Engines(plan, stt, tts, client)


class _Holds:
    """A warm pool's health told to several holds (:class:`~wyoming_openai.warm.Health`)."""

    def __init__(self, *holds: LocalHold) -> None:
        self._holds = holds

    def mark_out(self, cause: BridgeError) -> None:
        for hold in self._holds:
            hold.mark_out(cause)

    def mark_up(self) -> None:
        for hold in self._holds:
            hold.mark_up()


def _retry(settings: Settings, kind: Kind) -> RetryPolicy:
    return RetryPolicy(max_retries=settings.openai.max_retries, kind=kind)


def _openai_stt(client: AsyncOpenAI, settings: Settings, health: Health | None) -> SttEngine:
    """The OpenAI engine ``stt.mode`` asks for; ``health`` hears from its warm sessions."""
    if settings.stt.mode == "http":
        return HttpSttEngine(client, settings.stt, _retry(settings, "stt"))
    return RealtimeSttEngine(
        client,
        settings.stt,
        connect_timeout=settings.openai.connect_timeout,
        result_timeout=settings.openai.timeout,
        retry=_retry(settings, "stt"),
        health=health,
        finalize=LatencyTracker.from_settings("transcription finalize", settings.openai),
    )


def _openai_tts(client: AsyncOpenAI, settings: Settings, health: Health | None) -> TtsEngine:
    """The OpenAI engine ``tts.mode`` asks for; ``health`` hears from the realtime
    engine's warm sessions.

    ``auto`` gives an :class:`AutoTtsEngine` when the move to realtime is allowed
    (``tts.realtime_move``; by default when the base URL is OpenAI's: OpenAI-compatible
    servers keep ``/v1/audio/speech`` and mostly have no realtime endpoint), else the
    ``/v1/audio/speech`` engine alone.
    """
    tts = settings.tts
    speech = OpenAISpeechEngine(
        client,
        tts,
        _retry(settings, "tts"),
        LatencyTracker.from_settings("speech first byte", settings.openai),
    )
    if tts.mode == "speech":
        return speech
    realtime = RealtimeSpeechEngine(
        client,
        tts,
        connect_timeout=settings.openai.connect_timeout,
        response_timeout=settings.openai.timeout,
        retry=_retry(settings, "tts"),
        health=health,
    )
    if tts.mode == "realtime":
        return realtime
    move = tts.realtime_move
    if move is None:
        move = is_openai_base_url(settings.openai.base_url)
    return AutoTtsEngine(speech, realtime, tts.model) if move else speech
