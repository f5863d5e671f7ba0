"""Serving Wyoming connections with the process's engines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from functools import partial

from wyoming.server import AsyncServer

from .config import Settings
from .discovery import ZeroconfAdvertiser, advertiser_for
from .endpointing import MAX_COMMAND_SECONDS, EarlyEnd
from .engines import Engines, build_engines
from .framing import FrameLimits
from .handler import Services, WyomingOpenAIHandler
from .info import build_info
from .listener import Listener
from .redact import register_secret

_LOGGER = logging.getLogger(__name__)


def _early_end(settings: Settings) -> EarlyEnd | None:
    """When utterances end without ``audio-stop`` (``stt.early_transcript``), or None."""
    if not settings.stt.early_transcript:
        return None
    return EarlyEnd(
        silence_ms=settings.stt.early_transcript_silence * 1000,
        max_ms=min(MAX_COMMAND_SECONDS, settings.limits.max_utterance_seconds) * 1000,
    )


class WyomingOpenAIServer:
    """The Wyoming server: one handler per connection, all on the same engines.

    Args:
        settings: the process's settings.
        engines: the engines to serve with (default: built from ``settings`` by
            :func:`~wyoming_openai.engines.build_engines`).

    Usage: ``await server.start()`` (returns once listening), ``await server.stop()``;
    or ``await server.run()`` until SIGTERM/SIGINT.
    """

    def __init__(self, settings: Settings, engines: Engines | None = None) -> None:
        self.settings = settings
        if settings.openai.api_key is not None:
            register_secret(settings.openai.api_key.get_secret_value())
        # ConfigError when the local engines are needed but not installed.
        self.engines = engines if engines is not None else build_engines(settings)
        stt, tts = self.engines.stt, self.engines.tts
        self.services = Services(
            stt=stt,
            tts=tts,
            describe=lambda: build_info(stt, tts, settings.stt.early_transcript).event(),
            stt_language=settings.stt.language,
            tts_lookahead=settings.tts.lookahead,
            debug=settings.debug,
            frame_limits=FrameLimits(
                max_data_bytes=settings.limits.max_event_data_bytes,
                max_payload_bytes=settings.limits.max_payload_bytes,
            ),
            max_utterance_ms=settings.limits.max_utterance_seconds * 1000,
            max_text_chars=settings.limits.max_text_chars,
            audio_dump_dir=settings.audio_dump_dir,
            early_end=_early_end(settings),
        )
        self._listener: Listener | None = None
        self._advertiser: ZeroconfAdvertiser | None = None

    @property
    def port(self) -> int | None:
        """The TCP port listened on (useful with port 0), or None for other URIs."""
        return self._listener.port if self._listener is not None else None

    @property
    def connection_count(self) -> int:
        """Wyoming connections open now."""
        return self._listener.connection_count if self._listener is not None else 0

    async def prepare(self) -> None:
        """Load the engines' models (local engines), off the event loop.

        Raises:
            ConfigError: a model or voice cannot be loaded.
        """
        await self.engines.prepare()

    async def start(self) -> None:
        """Load the models, then listen on ``settings.uri``; returns once connections are
        accepted.

        Raises:
            ConfigError: a model or voice cannot be loaded.
        """
        await self.prepare()
        self._listener = Listener(self.settings.uri, partial(WyomingOpenAIHandler, self.services))
        await self._listener.start()
        if self.engines.plan.serving == "local":
            _LOGGER.info(
                "Listening on %s (local engines: stt faster-whisper %s, tts Piper %s)",
                self.settings.uri,
                ", ".join(model.name for model in self.services.stt.models()),
                self.services.tts.default_voice(),
            )
        else:
            _LOGGER.info(
                "Listening on %s (stt %s/%s, tts %s/%s)",
                self.settings.uri,
                self.settings.stt.mode,
                self.settings.stt.model,
                self.settings.tts.mode,
                self.settings.tts.model,
            )
        self._advertiser = advertiser_for(
            self.settings.zeroconf, self.settings.uri, self._listener.sockets
        )
        if self._advertiser is not None:
            await self._advertiser.start()

    @property
    def advertiser(self) -> ZeroconfAdvertiser | None:
        """The zeroconf advertisement while serving (None when disabled)."""
        return self._advertiser

    async def stop(self) -> None:
        """Withdraw the zeroconf advertisement, close every connection and upstream
        session, then the SDK client."""
        if self._advertiser is not None:
            await self._advertiser.stop()  # goodbye first: no client tries a closing server
            self._advertiser = None
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
        await self.engines.aclose()

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if self.settings.uri.startswith("stdio://"):
            await self.prepare()
            server = AsyncServer.from_uri(self.settings.uri)
            runner = asyncio.create_task(server.run(partial(WyomingOpenAIHandler, self.services)))
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            runner.cancel()
        else:
            await self.start()
            await stop.wait()
        _LOGGER.info("Stopping")
        await self.stop()
