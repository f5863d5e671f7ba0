"""Building the engines from settings and serving Wyoming connections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from functools import partial

from openai import AsyncOpenAI
from wyoming.server import AsyncServer, AsyncTcpServer

from .config import Settings
from .discovery import ZeroconfAdvertiser, advertiser_for
from .endpointing import MAX_COMMAND_SECONDS, EarlyEnd
from .engines import local_engines, plan_engines, with_local_fallback
from .framing import FrameLimits
from .handler import Services, WyomingOpenAIHandler
from .info import build_info
from .openai_client import make_client
from .redact import register_secret
from .retry import RetryPolicy
from .stt.base import SttEngine
from .stt.openai_http import HttpSttEngine
from .stt.openai_realtime import RealtimeSttEngine
from .tts.auto import build_tts_engine
from .tts.base import TtsEngine

_LOGGER = logging.getLogger(__name__)

CONNECTION_CLOSE_TIMEOUT = 5.0
"""Seconds open connections get to end (their jobs cancelled) at shutdown before their
tasks are cancelled; Docker sends SIGKILL 10 s after SIGTERM."""


async def _close_connections(server: AsyncServer) -> None:
    """Stop accepting, end every open connection (each handler cancels its jobs in
    ``disconnect``) and wait for their tasks, at most :data:`CONNECTION_CLOSE_TIMEOUT` s.

    wyoming's ``AsyncServer.stop`` only asks the handlers to stop; it neither closes the
    listener first nor waits for them (wyoming 1.10.2 ``server.py``).
    """
    listener = getattr(server, "_server", None)
    if listener is not None:
        listener.close()  # no new connection while the open ones are closed
    tasks = list(getattr(server, "_handlers", {}))
    await server.stop()
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=CONNECTION_CLOSE_TIMEOUT)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        _LOGGER.warning("Cancelled %d connection(s) that did not end in time", len(pending))


def _openai_engines(client: AsyncOpenAI, settings: Settings) -> tuple[SttEngine, TtsEngine]:
    """The OpenAI engines ``stt.mode`` and ``tts.mode`` ask for."""
    stt: SttEngine
    if settings.stt.mode == "http":
        stt = HttpSttEngine(
            client, settings.stt, RetryPolicy(max_retries=settings.openai.max_retries)
        )
    else:
        stt = RealtimeSttEngine(
            client,
            settings.stt,
            connect_timeout=settings.openai.connect_timeout,
            result_timeout=settings.openai.timeout,
            retry=RetryPolicy(max_retries=settings.openai.max_retries),
        )
    return stt, build_tts_engine(client, settings)


def _early_end(settings: Settings) -> EarlyEnd | None:
    """When utterances end without ``audio-stop`` (``stt.early_transcript``), or None."""
    if not settings.stt.early_transcript:
        return None
    return EarlyEnd(
        silence_ms=settings.stt.early_transcript_silence * 1000,
        max_ms=min(MAX_COMMAND_SECONDS, settings.limits.max_utterance_seconds) * 1000,
    )


class WyomingOpenAIServer:
    """The server: engines shared by all connections, one handler per connection.

    Usage: ``await server.start()`` (returns once listening), ``await server.stop()``;
    or ``await server.run()`` until SIGTERM/SIGINT.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.openai.api_key is not None:
            register_secret(settings.openai.api_key.get_secret_value())
        # Who serves (OpenAI or the local engines), and whether local covers OpenAI;
        # ConfigError when the local engines are needed but not installed.
        self.plan = plan_engines(settings)
        self.plan.log()
        self._client: AsyncOpenAI | None = None
        stt: SttEngine
        tts: TtsEngine
        if self.plan.serving == "local":
            stt, tts = local_engines(settings)
        else:
            self._client = make_client(settings.openai)
            stt, tts = _openai_engines(self._client, settings)
            if self.plan.fallback:
                stt, tts = with_local_fallback(settings, stt, tts)
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
        self._server: AsyncServer | None = None
        self._advertiser: ZeroconfAdvertiser | None = None

    @property
    def port(self) -> int | None:
        """The TCP port listened on (useful with port 0), or None for other URIs."""
        if isinstance(self._server, AsyncTcpServer) and self._server._server is not None:
            sockets = getattr(self._server._server, "sockets", ())
            return int(sockets[0].getsockname()[1]) if sockets else None
        return None

    async def prepare(self) -> None:
        """Load the engines' models (local engines), off the event loop.

        Raises:
            ConfigError: a model or voice cannot be loaded.
        """
        await self.services.stt.prepare()
        await self.services.tts.prepare()

    async def start(self) -> None:
        """Load the models, then listen on ``settings.uri``; returns once connections are
        accepted.

        Raises:
            ConfigError: a model or voice cannot be loaded.
        """
        await self.prepare()
        self._server = AsyncServer.from_uri(self.settings.uri)
        await self._server.start(partial(WyomingOpenAIHandler, self.services))
        if self.plan.serving == "local":
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
        listener = getattr(self._server, "_server", None)
        self._advertiser = advertiser_for(
            self.settings.zeroconf, self.settings.uri, getattr(listener, "sockets", ())
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
        if self._server is not None:
            server, self._server = self._server, None
            await _close_connections(server)
        await self.services.stt.aclose()
        await self.services.tts.aclose()
        if self._client is not None:
            await self._client.close()

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
            self._server = server
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
