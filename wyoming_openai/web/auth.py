"""Who may use the web face: the shared token (``web.token``) and the WebSocket's origin.

Browsers cannot set headers on a WebSocket, so its token comes in the ``start`` message or
as a ``Sec-WebSocket-Protocol`` entry ``bearer.<token>``; HTTP requests send
``Authorization: Bearer <token>``. A WebSocket handshake carries the page's ``Origin`` and
browsers apply no CORS to it, so the server checks it: the web face's own origin, or one
of ``web.allowed_origins``. A client that sends no ``Origin`` is not a browser page and
is let through (the token still applies).
"""

from __future__ import annotations

import hmac

from aiohttp import web

from ..errors import BridgeError, ErrorCode

PROTOCOL_PREFIX = "bearer."
"""``Sec-WebSocket-Protocol`` entries carrying a token start with this."""


class Gate:
    """The token and origin checks of one web face.

    Args:
        token: the shared token, or None when none is required.
        allowed_origins: origins allowed besides the web face's own.
    """

    def __init__(self, token: str | None, allowed_origins: list[str]) -> None:
        self._token = token
        self._origins = {origin.rstrip("/").lower() for origin in allowed_origins}

    @property
    def token_required(self) -> bool:
        """Whether a token is needed."""
        return self._token is not None

    def accepts(self, token: str | None) -> bool:
        """Whether ``token`` is the right one (always, when none is required)."""
        if self._token is None:
            return True
        return token is not None and hmac.compare_digest(token.encode(), self._token.encode())

    def check_http(self, request: web.Request) -> None:
        """``Authorization: Bearer`` of an HTTP request.

        Raises:
            BridgeError: ``unauthorized``.
        """
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not self.accepts(token.strip() if scheme.lower() == "bearer" else None):
            raise BridgeError(ErrorCode.UNAUTHORIZED, "a valid token is required")

    def protocol_token(self, request: web.Request) -> str | None:
        """The ``Sec-WebSocket-Protocol`` entry carrying a token, if the client offered one."""
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        for entry in (part.strip() for part in offered.split(",")):
            if entry.startswith(PROTOCOL_PREFIX):
                return entry
        return None

    def check_origin(self, request: web.Request) -> None:
        """The WebSocket's ``Origin``: absent, the web face's own, or an allowed one.

        Raises:
            BridgeError: ``forbidden-origin``.
        """
        origin = request.headers.get("Origin")
        if origin is None:
            return
        origin = origin.rstrip("/").lower()
        own = f"{request.scheme}://{request.host}".lower()
        if origin != own and origin not in self._origins:
            raise BridgeError(ErrorCode.FORBIDDEN_ORIGIN, f"origin {origin} is not allowed")
