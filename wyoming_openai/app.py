"""The process: every face (Wyoming, and the web face unless ``--no-web``) on one set of
engines, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from .config import Settings
from .engines import Engines
from .server import WyomingOpenAIServer

_LOGGER = logging.getLogger(__name__)


async def serve(settings: Settings, engines: Engines) -> None:
    """Serve until SIGTERM or SIGINT, then stop every face and the engines.

    The web face listens first, so ``/healthz`` says "starting" while the local models
    load; the Wyoming server then prepares the engines and listens. A ``stdio://`` server
    serves its one client alone.

    Raises:
        ConfigError: a local model or voice cannot be loaded.
        OSError: an address cannot be listened on.
    """
    server = WyomingOpenAIServer(settings, engines)
    if settings.uri.startswith("stdio://"):
        await server.run()
        return
    face = None
    if settings.web.enabled:
        from .web.face import WebFace  # aiohttp is imported only when the web face serves

        face = WebFace(settings, engines)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if face is not None:
            try:
                await face.start()
            except OSError as err:
                raise OSError(err.errno, f"{settings.web.uri} (web face): {err.strerror}") from err
        try:
            await server.start()
        except OSError as err:
            raise OSError(err.errno, f"{settings.uri}: {err.strerror}") from err
        if face is not None:
            face.ready = True
        await stop.wait()
        _LOGGER.info("Stopping")
    finally:
        if face is not None:
            await face.stop()
        await server.stop()
