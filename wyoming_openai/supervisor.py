"""Discovery through the Home Assistant Supervisor, for the add-on.

Inside a Home Assistant OS add-on, zeroconf is off (the add-on's container is not on the
home network); Home Assistant learns about the server from the Supervisor instead. Once the
server answers ``describe``, :func:`announce` posts

    POST http://supervisor/discovery
    Authorization: Bearer $SUPERVISOR_TOKEN
    {"service": "wyoming", "config": {"uri": "tcp://<add-on host name>:10300"}}

as the Supervisor's API expects (``supervisor/api/discovery.py``; the official add-ons do
the same with bashio's ``bashio::discovery``). The Supervisor hands the message to Home
Assistant, whose Wyoming integration then offers a "Wyoming Protocol" card (its config
flow's ``hassio`` step reads ``config["uri"]``). The add-on's host name is its container's
(``socket.gethostname()``), which the Supervisor's internal network resolves.

A Supervisor that is not ready (no connection, HTTP 5xx) is asked again after 1, 2, 4 ...
seconds, at most 30 apart, until it answers; a refusal (4xx) is logged once and not
repeated. Success is logged once. Outside the Supervisor (no ``SUPERVISOR_TOKEN``) nothing
is sent, and nothing said.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlparse

from .config import Settings
from .config_sources import AddonEnvironment
from .health import Unhealthy, check, client_uri

_LOGGER = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0
"""Seconds before the first retry; each later wait doubles ..."""
BACKOFF_MAX = 30.0
"""... up to this many seconds."""
READY_POLL = 0.5
"""Seconds between two ``describe`` probes while the server starts."""
REQUEST_TIMEOUT = 10.0
"""Seconds one discovery request may take."""

Sleep = Callable[[float], Awaitable[Any]]


class DiscoveryRefused(Exception):
    """The Supervisor answered 4xx: asking again would not help."""


def discovery_message(port: int, hostname: str | None = None) -> dict[str, Any]:
    """The discovery message for a Wyoming server on ``port`` of this container."""
    host = hostname or socket.gethostname()
    return {"service": "wyoming", "config": {"uri": f"tcp://{host}:{port}"}}


def backoff_delays() -> Iterator[float]:
    """1, 2, 4, 8, 16, 30, 30, ... seconds."""
    delay = BACKOFF_FIRST
    while True:
        yield delay
        delay = min(delay * 2, BACKOFF_MAX)


async def wait_until_serving(uri: str, sleep: Sleep = asyncio.sleep) -> None:
    """Return once the Wyoming server at ``uri`` answers ``describe`` with ``info``."""
    while True:
        try:
            await check(uri)
            return
        except Unhealthy:
            await sleep(READY_POLL)


async def post_discovery(
    base_url: str, token: str, message: dict[str, Any], sleep: Sleep = asyncio.sleep
) -> str | None:
    """POST ``message`` to ``{base_url}/discovery`` until the Supervisor accepts it.

    Retries with back-off (:func:`backoff_delays`) on connection errors, timeouts and
    HTTP 5xx. Returns the message's uuid, if the answer gave one.

    Raises:
        DiscoveryRefused: HTTP 4xx (a wrong token, or ``wyoming`` missing from the
            add-on's ``discovery`` list).
    """
    import aiohttp  # imported only inside the add-on

    url = f"{base_url}/discovery"
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    delays = backoff_delays()
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.post(url, json=message, headers=headers) as response:
                    text = await response.text()
                    if response.status < 300:
                        return _uuid(text)
                    if response.status < 500:
                        raise DiscoveryRefused(f"HTTP {response.status}: {_reason(text)}")
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                problem = str(err) or type(err).__name__
            delay = next(delays)
            _LOGGER.debug("Supervisor not ready (%s); discovery again in %g s", problem, delay)
            await sleep(delay)


def _uuid(text: str) -> str | None:
    """``data.uuid`` of the Supervisor's ``{"result": "ok", "data": {"uuid": ...}}``."""
    try:
        data = json.loads(text).get("data") or {}
    except (ValueError, AttributeError):
        return None
    uuid = data.get("uuid") if isinstance(data, dict) else None
    return str(uuid) if uuid else None


def _reason(text: str) -> str:
    """The Supervisor's ``message`` from an error answer, else the text's first line."""
    try:
        message = json.loads(text).get("message")
    except (ValueError, AttributeError):
        message = None
    lines = str(message or text).strip().splitlines()
    return lines[0][:200] if lines else "no reason given"


async def announce(
    settings: Settings, environment: AddonEnvironment, sleep: Sleep = asyncio.sleep
) -> None:
    """Tell Home Assistant, through the Supervisor, where the Wyoming server listens.

    Waits until the server (``settings.uri``, a ``tcp://`` URI) answers ``describe``, then
    posts :func:`discovery_message` once. Without a Supervisor token, returns at once.
    Never raises: a refusal or an unexpected failure is logged (the server goes on).
    """
    if environment.supervisor_token is None:
        return
    port = urlparse(settings.uri).port
    if not settings.uri.startswith("tcp://") or port is None:
        _LOGGER.warning("Discovery: %s is not a tcp:// address; not sent", settings.uri)
        return
    message = discovery_message(port)
    try:
        await wait_until_serving(client_uri(settings.uri), sleep)
        token = environment.supervisor_token.get_secret_value()
        uuid = await post_discovery(environment.supervisor_url, token, message, sleep)
    except DiscoveryRefused as err:
        _LOGGER.error(
            "Discovery: the Supervisor refused %s (%s); add the Wyoming Protocol "
            "integration by hand with that host and port",
            message["config"]["uri"],
            err,
        )
        return
    except Exception:  # the server must not stop because discovery failed
        _LOGGER.exception("Discovery: not sent")
        return
    _LOGGER.info(
        "Discovery: sent %s to Home Assistant through the Supervisor%s; accept the "
        "Wyoming Protocol card under Settings > Devices & services",
        message["config"]["uri"],
        f" (message {uuid})" if uuid else "",
    )
