"""The listening socket for ``tcp://`` and ``unix://`` URIs, and the connections it owns.

wyoming's ``AsyncTcpServer``/``AsyncUnixServer`` (wyoming 1.10.2 ``server.py``) give no
public access to the listening sockets (needed for the port and for zeroconf) nor to the
open connections (needed to close them at shutdown and wait for them), so this module
listens itself with asyncio and runs one wyoming ``AsyncEventHandler`` per connection.
``stdio://`` needs neither and is served by wyoming's own ``AsyncServer``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlparse

from wyoming.server import AsyncEventHandler

_LOGGER = logging.getLogger(__name__)

HandlerFactory = Callable[[asyncio.StreamReader, asyncio.StreamWriter], AsyncEventHandler]

CLOSE_TIMEOUT = 5.0
"""Seconds open connections get to end (their jobs cancelled) at shutdown before their
tasks are cancelled; Docker sends SIGKILL 10 s after SIGTERM."""


class Listener:
    """Accepts connections on a ``tcp://host:port`` or ``unix://path`` URI.

    Args:
        uri: where to listen (port 0 picks a free port).
        handler_factory: builds the handler of one connection from its streams.

    Raises:
        ValueError: (``__init__``) another URI scheme, or a TCP URI without a port.
    """

    def __init__(self, uri: str, handler_factory: HandlerFactory) -> None:
        parsed = urlparse(uri)
        if parsed.scheme not in ("tcp", "unix"):
            raise ValueError(f"{uri}: only tcp:// and unix:// are listened on")
        if parsed.scheme == "tcp" and (parsed.hostname is None or parsed.port is None):
            raise ValueError("A port must be specified when using a 'tcp://' URI")
        self._uri = parsed
        self._factory = handler_factory
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], AsyncEventHandler] = {}

    @property
    def sockets(self) -> Sequence[socket.socket]:
        """The listening sockets (empty before :meth:`start` and after :meth:`close`)."""
        return self._server.sockets if self._server is not None else ()

    @property
    def port(self) -> int | None:
        """The TCP port listened on, or None (unix socket, or not listening)."""
        for sock in self.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return int(sock.getsockname()[1])
        return None

    @property
    def connection_count(self) -> int:
        """Connections open now."""
        return len(self._connections)

    async def start(self) -> None:
        """Listen; returns once connections are accepted.

        Raises:
            OSError: the address cannot be listened on.
        """
        if self._uri.scheme == "unix":
            self._server = await asyncio.start_unix_server(self._accept, path=self._uri.path)
        else:
            self._server = await asyncio.start_server(
                self._accept, host=self._uri.hostname, port=self._uri.port
            )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = self._factory(reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = handler
        try:
            await handler.run()
        finally:
            self._connections.pop(task, None)

    async def close(self) -> None:
        """Stop accepting, end every open connection (each handler cancels its jobs in
        ``disconnect``) and wait for them, at most :data:`CLOSE_TIMEOUT` s; connections
        still open then are cancelled."""
        if self._server is not None:
            self._server.close()  # no new connection while the open ones are closed
        tasks = list(self._connections)
        await asyncio.gather(*(handler.stop() for handler in self._connections.values()))
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                _LOGGER.warning("Cancelled %d connection(s) that did not end in time", len(pending))
        self._server = None
