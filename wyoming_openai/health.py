"""Health check: ``python -m wyoming_openai.health [--uri URI] [--timeout S]``.

Does what Home Assistant does on discovery (``homeassistant/components/wyoming/data.py`` and
``config_flow.py``, Home Assistant 2026.11): connect, send ``describe``, wait for ``info``,
and require at least one program with
``installed: true``. Exit status 0 when the server answers (one line on stdout), 1 with a
one-line reason on stderr otherwise: Docker's ``HEALTHCHECK`` convention (0 healthy,
1 unhealthy; 2 is reserved), and the line lands in ``docker inspect``'s health log.

The URI defaults to the server's own (``WYOMING_OPENAI_URI``, then ``uri`` in the
``WYOMING_OPENAI_CONFIG`` file, then ``tcp://0.0.0.0:10300``), with a wildcard host
(``0.0.0.0``, ``::``) replaced by the loopback address of the same family. Only the
``wyoming`` client and the settings module are imported: it starts fast on a Raspberry Pi.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from ipaddress import ip_address
from urllib.parse import urlparse

from wyoming.client import AsyncClient
from wyoming.info import Describe, Info

from .config_sources import configured_uri
from .errors import ConfigError

DEFAULT_TIMEOUT = 5.0
"""Seconds for connect + describe + info: Home Assistant waits 5 s for ``info``."""

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1


class Unhealthy(Exception):
    """The server did not answer as it should; the message is the one-line reason."""


def client_uri(uri: str) -> str:
    """The URI a local client connects to for a server listening on ``uri``.

    ``tcp://0.0.0.0:P`` becomes ``tcp://127.0.0.1:P`` and ``tcp://[::]:P`` becomes
    ``tcp://[::1]:P``; anything else is returned unchanged.

    Raises:
        Unhealthy: ``stdio://``, an unknown scheme, or a ``tcp://`` URI without host or port.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "unix":
        return uri
    if parsed.scheme != "tcp":
        raise Unhealthy(f"cannot check {uri}: only tcp:// and unix:// servers can be reached")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise Unhealthy(f"cannot check {uri}: tcp:// needs a host and a port")
    try:
        address = ip_address(host)
    except ValueError:
        return uri  # a host name
    if address.is_unspecified:
        return f"tcp://127.0.0.1:{port}" if address.version == 4 else f"tcp://[::1]:{port}"
    return uri


async def check(uri: str, wait_seconds: float = DEFAULT_TIMEOUT) -> Info:
    """Connect to ``uri``, send ``describe`` and return the ``info`` received.

    Args:
        uri: ``tcp://HOST:PORT`` or ``unix://PATH`` of a running server.
        wait_seconds: seconds for the whole exchange (connect, describe, info).

    Raises:
        Unhealthy: with a one-line reason (no connection, no answer in time, connection
            closed, or an ``info`` without an installed program).
    """
    try:
        async with asyncio.timeout(wait_seconds):
            async with AsyncClient.from_uri(uri) as client:
                await client.write_event(Describe().event())
                while True:
                    event = await client.read_event()
                    if event is None:
                        raise Unhealthy(f"{uri} closed the connection without sending info")
                    if Info.is_type(event.type):
                        info = Info.from_event(event)
                        break
    except TimeoutError:
        raise Unhealthy(f"no info from {uri} within {wait_seconds:g} s") from None
    except OSError as err:  # refused, unreachable, no such socket file...
        reason = os.strerror(err.errno) if err.errno else str(err) or type(err).__name__
        raise Unhealthy(f"cannot connect to {uri}: {reason}") from None
    except (ValueError, KeyError, TypeError) as err:  # a malformed event or info
        raise Unhealthy(f"{uri} sent a malformed answer: {err}") from None
    if not installed_programs(info):
        raise Unhealthy(f"{uri} answered, but its info lists no installed program")
    return info


def installed_programs(info: Info) -> list[str]:
    """Names of the installed programs in ``info``, in Home Assistant's order (satellite,
    asr, tts, wake, intent, handle)."""
    programs = [*info.asr, *info.tts, *info.wake, *info.intent, *info.handle]
    if info.satellite is not None:
        programs.insert(0, info.satellite)
    return [program.name for program in programs if program.installed]


def build_arg_parser() -> argparse.ArgumentParser:
    """``--uri`` and ``--timeout``."""
    parser = argparse.ArgumentParser(
        prog="python -m wyoming_openai.health",
        description=(
            "Check that a wyoming-openai server answers describe with info "
            "(exit 0), or print why not (exit 1)."
        ),
    )
    parser.add_argument(
        "--uri",
        help=(
            "Server to check (default: the server's uri from WYOMING_OPENAI_URI or the "
            "WYOMING_OPENAI_CONFIG file, else tcp://0.0.0.0:10300; 0.0.0.0 means 127.0.0.1)."
        ),
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"Seconds to wait for the answer (default {DEFAULT_TIMEOUT:g}).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check; returns the exit status (prints one line either way)."""
    args = build_arg_parser().parse_args(argv)
    try:
        if args.timeout <= 0:
            raise Unhealthy("--timeout must be a positive number of seconds")
        uri = client_uri(args.uri or configured_uri())
        info = asyncio.run(check(uri, args.timeout))
    except (Unhealthy, ConfigError) as err:
        print(f"unhealthy: {err}", file=sys.stderr)
        return EXIT_UNHEALTHY
    print(f"healthy: {uri} serves {', '.join(installed_programs(info))}")
    return EXIT_HEALTHY


if __name__ == "__main__":
    sys.exit(main())
