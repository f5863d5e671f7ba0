"""A zeroconf browser that does what Home Assistant does on discovery, for the tests.

``python -m tests.mdns_browser [--interface ADDRESS]...`` browses for
``_wyoming._tcp.local.`` with python-zeroconf's ``AsyncServiceBrowser`` (as Home
Assistant's zeroconf integration does), resolves each service with
``AsyncServiceInfo.async_request``, connects to an advertised address (IPv4 first, never a
link-local one, as Home Assistant picks it), sends ``describe`` and reads ``info``
(Home Assistant 2026.11 ``homeassistant/components/wyoming/config_flow.py``). It prints one
JSON object per line on stdout:

- ``{"added": NAME, "port": P, "addresses": [...], "connected_to": A, "programs": {...}}``
  (``programs``: ``{"asr": [names], "tts": [names]}`` of installed programs), or with
  ``"error"`` instead of ``programs`` when resolving or ``describe`` failed;
- ``{"removed": NAME}`` when the service says goodbye (or expires).

It runs as a separate process so that the tests can start it inside a network namespace;
it stops when its standard input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from ipaddress import ip_address
from typing import Any

from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

SERVICE_TYPE = "_wyoming._tcp.local."
RESOLVE_TIMEOUT_MS = 3000
DESCRIBE_TIMEOUT = 5.0  # Home Assistant waits 5 s for info


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def pick_address(addresses: list[str]) -> str | None:
    """The address Home Assistant would connect to: not link-local, IPv4 first."""
    usable = [ip_address(a) for a in addresses if not ip_address(a.split("%")[0]).is_link_local]
    usable.sort(key=lambda a: a.version)
    return str(usable[0]) if usable else None


async def resolve_and_describe(zc: Zeroconf, name: str) -> None:
    instance = name.removesuffix("." + SERVICE_TYPE)
    info = AsyncServiceInfo(SERVICE_TYPE, name)
    if not await info.async_request(zc, RESOLVE_TIMEOUT_MS):
        emit({"added": instance, "error": "not resolved"})
        return
    addresses = info.parsed_addresses()
    record: dict[str, Any] = {"added": instance, "port": info.port, "addresses": addresses}
    host = pick_address(addresses)
    record["connected_to"] = host
    if host is None or info.port is None:
        emit({**record, "error": "no usable address"})
        return
    try:
        async with asyncio.timeout(DESCRIBE_TIMEOUT):
            async with AsyncTcpClient(host, info.port) as client:
                await client.write_event(Describe().event())
                while True:
                    event = await client.read_event()
                    if event is None:
                        raise ConnectionError("closed before info")
                    if Info.is_type(event.type):
                        described = Info.from_event(event)
                        break
    except (OSError, EOFError, TimeoutError) as err:
        emit({**record, "error": f"describe failed: {err!r}"})
        return
    record["programs"] = {
        "asr": [p.name for p in described.asr if p.installed],
        "tts": [p.name for p in described.tts if p.installed],
    }
    emit(record)


async def main(interfaces: list[str]) -> None:
    any_v6 = any(":" in address for address in interfaces)
    aiozc = AsyncZeroconf(
        interfaces=interfaces or InterfaceChoice.All,
        ip_version=IPVersion.All if any_v6 or not interfaces else IPVersion.V4Only,
    )
    tasks: set[asyncio.Task[None]] = set()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Added:
            task = asyncio.create_task(resolve_and_describe(zeroconf, name))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif state_change is ServiceStateChange.Removed:
            emit({"removed": name.removesuffix("." + SERVICE_TYPE)})

    browser = AsyncServiceBrowser(aiozc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
    emit({"browsing": True})
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes stdin
    await browser.async_cancel()
    await aiozc.async_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--interface", action="append", default=[])
    asyncio.run(main(parser.parse_args().interface))
