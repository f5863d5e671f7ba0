"""Where the zeroconf tests can send multicast DNS without touching a real network.

Two kinds of lab, tried in this order (``WYOMING_OPENAI_TEST_MDNS_LAB=loopback|netns``
forces one):

- ``loopback``: servers bind ``127.0.0.1`` (so they announce on the loopback interface only)
  and the browser listens there. Needs a kernel that loops multicast back on ``lo``,
  checked with two plain UDP sockets.
- ``netns``: three network namespaces on one bridged link (iproute2, root): servers bind the
  wildcard address (``ip netns exec``) and must advertise their veth address; the browser
  runs in the third, like Home Assistant on another host. The second server host lets two
  servers contend for one name as two machines on a LAN do.

Servers and the browser (:mod:`tests.mdns_browser`) run as subprocesses, so a test can send
them SIGTERM and read their logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAB_ENV = "WYOMING_OPENAI_TEST_MDNS_LAB"
EVENT_TIMEOUT = 20.0  # s: a hang guard (registration takes about 1.5 s), not a measurement
EXIT_TIMEOUT = 15.0  # s: a hang guard for a process told to stop

SERVER_V4 = "10.213.7.1"
BROWSER_V4 = "10.213.7.2"
SERVER_V6 = "fd57:7979::1"
BROWSER_V6 = "fd57:7979::2"
SECOND_V4 = "10.213.7.3"
SECOND_V6 = "fd57:7979::3"


@dataclass
class MdnsLab:
    """How to run a server and a browser that can hear each other's mDNS."""

    kind: str
    server_host: str
    """Host of the servers' ``tcp://`` URI (``127.0.0.1``, or ``0.0.0.0`` in a namespace)."""
    server_prefix: list[str] = field(default_factory=list)
    second_server_prefix: list[str] | None = None
    """Prefix that runs a server on another host than ``server_prefix`` (netns only)."""
    browser_prefix: list[str] = field(default_factory=list)
    browser_interfaces: list[str] = field(default_factory=list)
    server_addresses: tuple[str, ...] = ()
    """Addresses a server bound to the wildcard may advertise (the namespace's veth)."""


# --------------------------------------------------------------------------- probing


def loopback_multicast_reason() -> str | None:
    """None when IPv4 multicast sent on ``lo`` comes back to a member socket, else why not."""
    group = "224.0.0.251"
    try:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
        ):
            receiver.bind(("0.0.0.0", 0))
            port = receiver.getsockname()[1]
            membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("127.0.0.1"))
            receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            receiver.settimeout(1.0)
            sender.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1")
            )
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sender.sendto(b"wyoming-openai probe", (group, port))
            data, _ = receiver.recvfrom(64)
    except OSError as err:
        return f"multicast on loopback does not work here ({err})"
    return None if data == b"wyoming-openai probe" else "multicast on loopback is not looped back"


def netns_reason() -> str | None:
    """None when this process can create network namespaces, else why not."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2 (apt-get install iproute2)"
    return None


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@contextlib.contextmanager
def network_namespaces() -> Iterator[MdnsLab]:
    """Three hosts on one link: namespaces ``server`` and ``second`` (another server host) and
    ``browser``, each with IPv4 and IPv6 addresses, their veth pairs joined by a bridge in the
    browser's namespace; all deleted on exit.

    Two responders must sit on different hosts for RFC 6762 §8.1 probing to be tested: the
    first probe asks for a unicast answer (the QU bit), sent to the prober's address and port
    5353, and where two responders share that address the kernel hands each datagram to only
    one of their ``SO_REUSEPORT`` sockets.

    Raises:
        RuntimeError: iproute2 failed (e.g. no permission in a container).
    """
    tag = f"{os.getpid() % 100000}{int(time.monotonic() * 1000) % 1000}"
    server_ns, second_ns, browser_ns = f"wyo-{tag}-s", f"wyo-{tag}-t", f"wyo-{tag}-b"
    bridge = f"wyo{tag}br"[:15]
    created: list[str] = []
    try:
        for ns in (server_ns, second_ns, browser_ns):
            _ip("netns", "add", ns)
            created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", browser_ns, "link", "add", bridge, "type", "bridge", "mcast_snooping", "0")
        _ip("-n", browser_ns, "addr", "add", f"{BROWSER_V4}/24", "dev", bridge)
        _ip("-n", browser_ns, "addr", "add", f"{BROWSER_V6}/64", "dev", bridge, "nodad")
        _ip("-n", browser_ns, "link", "set", bridge, "up")
        for ns, letter, v4, v6 in (
            (server_ns, "s", SERVER_V4, SERVER_V6),
            (second_ns, "t", SECOND_V4, SECOND_V6),
        ):
            ifname, port = f"wyo{tag}{letter}"[:15], f"wyo{tag}{letter}p"[:15]
            _ip("-n", ns, "link", "add", ifname, "type", "veth", "peer", "name", port,
                "netns", browser_ns)  # fmt: skip
            _ip("-n", browser_ns, "link", "set", port, "master", bridge, "up")
            _ip("-n", ns, "addr", "add", f"{v4}/24", "dev", ifname)
            _ip("-n", ns, "addr", "add", f"{v6}/64", "dev", ifname, "nodad")
            _ip("-n", ns, "link", "set", ifname, "up")
        yield MdnsLab(
            kind="netns",
            server_host="0.0.0.0",
            server_prefix=["ip", "netns", "exec", server_ns],
            second_server_prefix=["ip", "netns", "exec", second_ns],
            browser_prefix=["ip", "netns", "exec", browser_ns],
            server_addresses=(SERVER_V4, SERVER_V6, SECOND_V4, SECOND_V6),
        )
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


# --------------------------------------------------------------------------- processes


class ServerProcess:
    """``python -m wyoming_openai`` in a subprocess; stderr (the log) is collected."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.log: list[str] = []
        self._listening = asyncio.Event()
        self._reader = asyncio.create_task(self._read_log())

    @classmethod
    async def start(
        cls,
        prefix: list[str],
        host: str,
        *args: str,
        port: int = 0,
        base_url: str | None = None,
        api_key: str = "sk-test-zeroconf",
    ) -> ServerProcess:
        """Start a server on ``tcp://host:port`` with ``args`` (after ``prefix``, e.g.
        ``ip netns exec NS``); returns once it listens."""
        uri_host = f"[{host}]" if ":" in host else host
        process = await asyncio.create_subprocess_exec(
            *prefix,
            sys.executable,
            "-m",
            "wyoming_openai",
            "--uri",
            f"tcp://{uri_host}:{port}",
            "--openai-base-url",
            base_url or "http://127.0.0.1:9/v1",
            "--fallback",
            "none",  # the local engines take seconds to load and are not needed here
            "--no-web",  # several servers at once: no shared web port
            *args,
            cwd=ROOT,
            env={**os.environ, "OPENAI_API_KEY": api_key},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        server = cls(process)
        async with asyncio.timeout(EVENT_TIMEOUT):
            waiter = asyncio.create_task(server._listening.wait())
            await asyncio.wait({waiter, server._reader}, return_when=asyncio.FIRST_COMPLETED)
        if not server._listening.is_set():
            waiter.cancel()
            raise AssertionError("server did not start:\n" + server.text)
        return server

    async def _read_log(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.log.append(line)
            if "Listening on" in line:
                self._listening.set()

    @property
    def text(self) -> str:
        return "\n".join(self.log)

    async def terminate(self) -> int:
        """SIGTERM, then the exit status (after the log is read to its end)."""
        if self.process.returncode is None:
            self.process.terminate()
        async with asyncio.timeout(EXIT_TIMEOUT):
            code = await self.process.wait()
            await self._reader
        return code

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        with contextlib.suppress(Exception):
            await self._reader


class BrowserProcess:
    """:mod:`tests.mdns_browser` in a subprocess; its JSON lines become :attr:`events`."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, lab: MdnsLab) -> BrowserProcess:
        args: list[str] = []
        for interface in lab.browser_interfaces:
            args += ["--interface", interface]
        process = await asyncio.create_subprocess_exec(
            *lab.browser_prefix,
            sys.executable,
            "-m",
            "tests.mdns_browser",
            *args,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        browser = cls(process)
        await browser.wait_for(lambda event: event.get("browsing", False))
        return browser

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            event = json.loads(raw)
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first event (seen so far or to come) matching ``predicate``."""

        def found() -> dict[str, Any] | None:
            return next((event for event in self.events if predicate(event)), None)

        async with asyncio.timeout(EVENT_TIMEOUT), self._changed:
            await self._changed.wait_for(lambda: found() is not None or self._reader.done())
        event = found()
        if event is None:
            raise AssertionError(f"browser stopped; events: {self.events}")
        return event

    def names_added(self) -> set[str]:
        return {event["added"] for event in self.events if "added" in event}

    async def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            async with asyncio.timeout(EXIT_TIMEOUT):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        with contextlib.suppress(Exception):
            await self._reader
