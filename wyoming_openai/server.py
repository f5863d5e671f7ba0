"""Building the engines from settings and serving Wyoming connections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from functools import partial

from wyoming.server import AsyncServer, AsyncTcpServer

from .config import Settings
from .framing import FrameLimits
from .handler import Services, WyomingOpenAIHandler
from .info import build_info
from .openai_client import make_client
from .redact import register_secret
from .retry import RetryPolicy
from .stt.base import SttEngine
from .stt.openai_http import HttpSttEngine
from .stt.openai_realtime import RealtimeSttEngine
from .tts.openai_speech import OpenAISpeechEngine

_LOGGER = logging.getLogger(__name__)


class WyomingOpenAIServer:
    """The server: engines shared by all connections, one handler per connection.

    Usage: ``await server.start()`` (returns once listening), ``await server.stop()``;
    or ``await server.run()`` until SIGTERM/SIGINT.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.openai.api_key is not None:
            register_secret(settings.openai.api_key.get_secret_value())
        self._client = make_client(settings.openai)
        stt: SttEngine
        if settings.stt.mode == "http":
            stt = HttpSttEngine(self._client, settings.stt)
        else:
            stt = RealtimeSttEngine(
                self._client,
                settings.stt,
                connect_timeout=settings.openai.connect_timeout,
                result_timeout=settings.openai.timeout,
                retry=RetryPolicy(max_retries=settings.openai.max_retries),
            )
        tts = OpenAISpeechEngine(self._client, settings.tts)
        self.services = Services(
            stt=stt,
            tts=tts,
            describe=lambda: build_info(stt, tts).event(),
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
        )
        self._server: AsyncServer | None = None

    @property
    def port(self) -> int | None:
        """The TCP port listened on (useful with port 0), or None for other URIs."""
        if isinstance(self._server, AsyncTcpServer) and self._server._server is not None:
            sockets = getattr(self._server._server, "sockets", ())
            return int(sockets[0].getsockname()[1]) if sockets else None
        return None

    async def start(self) -> None:
        """Listen on ``settings.uri``; returns once connections are accepted."""
        self._server = AsyncServer.from_uri(self.settings.uri)
        await self._server.start(partial(WyomingOpenAIHandler, self.services))
        _LOGGER.info(
            "Listening on %s (stt %s/%s, tts %s)",
            self.settings.uri,
            self.settings.stt.mode,
            self.settings.stt.model,
            self.settings.tts.model,
        )

    async def stop(self) -> None:
        """Close every connection and upstream session, then the SDK client."""
        if self._server is not None:
            await self._server.stop()
            self._server = None
        await self.services.stt.aclose()
        await self.services.tts.aclose()
        await self._client.close()

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if self.settings.uri.startswith("stdio://"):
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
