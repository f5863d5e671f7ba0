"""Zeroconf (mDNS / DNS-SD) advertisement, so Home Assistant discovers the server by itself.

Protocol facts (Home Assistant 2026.11, ``homeassistant/components/wyoming/manifest.json``
and ``config_flow.py``; wyoming 1.10.2 ``wyoming/zeroconf.py``):

- Home Assistant browses for the DNS-SD type ``_wyoming._tcp.local.`` and matches on the
  type alone; it needs the service's port and an address it can connect to, then sends
  ``describe``. Its entry's unique id is ``"{instance name}_{program name}"``, so the
  instance name must be stable across restarts.
- ``wyoming.zeroconf.HomeAssistantZeroconf`` advertises whatever host it is given; a server
  bound to ``0.0.0.0`` must therefore work out its real addresses itself (done here).

Records are published with python-zeroconf's asyncio API (``AsyncZeroconf``,
``AsyncServiceInfo``), which probes for name conflicts (RFC 6762 §8.1), announces
(§8.3), answers queries and sends goodbye packets (TTL 0, §10.1) when closed.

Addresses advertised (:func:`reachable_addresses`):

- bound to one address: that address;
- bound to a wildcard (``0.0.0.0``, or ``::``): every address of the host's interfaces of the
  socket's family, without loopback, IPv6 link-local (``fe80::/10``: no scope id can be
  advertised) and host-internal bridges (Docker, libvirt, veth pairs), the address of the
  default route first. asyncio sets ``IPV6_V6ONLY`` on IPv6 listening sockets, so ``::``
  accepts IPv6 only and ``0.0.0.0`` IPv4 only: only what clients can reach is advertised;
- ``zeroconf.host`` replaces all of this.

Interface addresses are checked again every :data:`ADDRESS_CHECK_INTERVAL` seconds while
bound to a wildcard: a Raspberry Pi that starts the server before its network is up is
advertised once an address appears, and again (goodbye, then a fresh announcement) when
DHCP changes it; a registration that failed is tried again then too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from urllib.parse import urlparse

import ifaddr
from zeroconf import InterfaceChoice, InterfacesType, IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from .config import ZeroconfSettings

_LOGGER = logging.getLogger(__name__)

SERVICE_TYPE = "_wyoming._tcp.local."
"""The DNS-SD service type Home Assistant browses for (its wyoming ``manifest.json``)."""

MAX_INSTANCE_NAME_BYTES = 63
"""Longest instance name, in UTF-8 bytes (RFC 6763 §4.1.1: one DNS label)."""

ADDRESS_CHECK_INTERVAL = 30.0
"""Seconds between checks of the interface addresses while bound to a wildcard."""

CLOSE_TIMEOUT = 3.0
"""Seconds allowed for the goodbye packets (3 x 125 ms in python-zeroconf) and closing."""

MDNS_GROUP = "224.0.0.251"
"""The IPv4 mDNS multicast group (RFC 6762 §3); only used to find the default route."""

VIRTUAL_INTERFACE_PREFIXES = ("docker", "br-", "veth", "virbr", "vnet", "cni", "flannel", "cali")
"""Interfaces of host-internal bridges (Docker, libvirt, CNI): their addresses are not
reachable from the network, so they are not advertised for a wildcard bind."""

IPAddress = IPv4Address | IPv6Address


def default_instance_name(hostname: str | None = None) -> str:
    """A stable instance name for this host: ``wyoming-openai-<short host name>``.

    Falls back to the hardware (MAC) address when the host name is empty or ``localhost``.
    The result is at most :data:`MAX_INSTANCE_NAME_BYTES` UTF-8 bytes.
    """
    host = (socket.gethostname() if hostname is None else hostname).split(".")[0].strip()
    if not host or host.lower() == "localhost":
        host = f"{uuid.getnode():012x}"
    name = f"wyoming-openai-{host}"
    return name.encode()[:MAX_INSTANCE_NAME_BYTES].decode(errors="ignore")


@dataclass(frozen=True)
class ListenAddress:
    """One listening socket: its local address, and whether an IPv6 socket also accepts
    IPv4 (``IPV6_V6ONLY`` off)."""

    address: IPAddress
    dual_stack: bool = False

    @classmethod
    def of_socket(cls, sock: socket.socket) -> ListenAddress:
        """Read a listening socket (``asyncio.Server.sockets`` items work too)."""
        host = str(sock.getsockname()[0]).split("%")[0]
        dual = False
        if sock.family == socket.AF_INET6:
            dual = not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        return cls(ip_address(host), dual)


def _is_virtual(interface_name: str) -> bool:
    return interface_name.startswith(VIRTUAL_INTERFACE_PREFIXES)


def _primary_ipv4() -> IPv4Address | None:
    """The source address of the default IPv4 route (a UDP ``connect`` sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((MDNS_GROUP, 5353))
            return IPv4Address(probe.getsockname()[0])
        except OSError:  # no route (no network yet, or an isolated namespace)
            return None


def reachable_addresses(
    listening: Sequence[ListenAddress],
    adapters: Iterable[ifaddr.Adapter] | None = None,
    primary: IPAddress | None = None,
) -> list[IPAddress]:
    """The addresses clients can connect to, for the sockets in ``listening``.

    Args:
        listening: the server's listening sockets (see :meth:`ListenAddress.of_socket`).
        adapters: the host's interfaces (default: read now with ``ifaddr``).
        primary: an address to put first when present (default: the default route's
            IPv4 source address).

    Returns:
        Unique addresses, IPv4 before IPv6, ``primary`` first; never a wildcard, never
        loopback or link-local unless the server is bound to exactly that address. Empty
        when bound to a wildcard on a host that has no usable address (yet).
    """
    specific = [item.address for item in listening if not item.address.is_unspecified]
    want_v4 = any(
        item.address.is_unspecified and (item.address.version == 4 or item.dual_stack)
        for item in listening
    )
    want_v6 = any(item.address.is_unspecified and item.address.version == 6 for item in listening)
    found: list[IPAddress] = list(specific)
    if want_v4 or want_v6:
        if adapters is None:
            adapters = ifaddr.get_adapters()
        if primary is None and want_v4:
            primary = _primary_ipv4()
        for adapter in adapters:
            if _is_virtual(adapter.name):
                continue
            for item in adapter.ips:
                raw = item.ip if isinstance(item.ip, str) else item.ip[0]
                address = ip_address(raw.split("%")[0])
                if address.is_loopback or (address.is_link_local and address.version == 6):
                    continue
                if (address.version == 4 and want_v4) or (address.version == 6 and want_v6):
                    found.append(address)
    unique = list(dict.fromkeys(found))
    unique.sort(key=lambda address: (address != primary, address.version))
    return unique


class ZeroconfAdvertiser:
    """Advertises one Wyoming TCP server as ``_wyoming._tcp.local.`` until :meth:`stop`.

    :meth:`start` returns at once; probing and announcing (about 1.5 s in
    python-zeroconf) run in a background task, so the server answers connections
    meanwhile. A name already taken on the network is replaced by a unique one
    (python-zeroconf appends ``-2``, ``-3``...) and logged as a warning. Network errors are
    logged, never raised: discovery is a convenience, the server keeps serving.

    Args:
        name: the instance name (at most :data:`MAX_INSTANCE_NAME_BYTES` UTF-8 bytes).
        port: the TCP port the server listens on.
        listening: the server's listening sockets.
        host: an address to advertise instead of the detected ones (``zeroconf.host``).
        address_check_interval: seconds between interface checks for a wildcard bind.
    """

    def __init__(
        self,
        name: str,
        port: int,
        listening: Sequence[ListenAddress],
        host: IPAddress | None = None,
        address_check_interval: float = ADDRESS_CHECK_INTERVAL,
    ) -> None:
        self.requested_name = name
        self.port = port
        self._listening = list(listening)
        self._host = host
        self._interval = address_check_interval
        self._follow = host is None and any(item.address.is_unspecified for item in listening)
        # The SRV target host: unique per machine and port, so two servers (here or on other
        # hosts, e.g. after a rename) never publish conflicting A/AAAA records, and never the
        # host's own name, which an Avahi daemon may own.
        self._server_host = f"wyoming-openai-{uuid.getnode():012x}-{port}.local."
        self._aiozc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._task: asyncio.Task[None] | None = None
        self._advertised = asyncio.Event()

    @property
    def name(self) -> str | None:
        """The instance name on the network (after any rename), or None until registered."""
        if self._info is None or not self._advertised.is_set():
            return None
        return self._info.name.removesuffix("." + SERVICE_TYPE)

    @property
    def addresses(self) -> list[str]:
        """The addresses currently advertised (empty until registered)."""
        if self._info is None or not self._advertised.is_set():
            return []
        return self._info.parsed_addresses()

    async def start(self) -> None:
        """Begin advertising in the background (call once the server listens)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="zeroconf advertiser")

    async def stop(self) -> None:
        """Send goodbye packets so browsers drop the service at once, then close."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._withdraw()

    # ------------------------------------------------------------------ internals

    def _addresses(self) -> list[IPAddress]:
        if self._host is not None:
            return [self._host]
        return reachable_addresses(self._listening)

    async def _run(self) -> None:
        advertised: list[IPAddress] | None = None
        warned = failed = False
        while True:
            try:
                addresses = await asyncio.to_thread(self._addresses)
            except OSError as err:
                _LOGGER.warning("Zeroconf: cannot read the network interfaces: %s", err)
                addresses = advertised or []
            if addresses != advertised:
                if advertised:
                    _LOGGER.info(
                        "Zeroconf: the addresses changed to %s",
                        ", ".join(map(str, addresses)) or "none",
                    )
                await self._withdraw()
                if addresses:
                    # After a failure, try again at the next check (logged once).
                    ok = await self._advertise(addresses, quiet=failed)
                    failed = not ok
                    advertised = addresses if ok else None
                else:
                    if not warned:
                        warned = True
                        _LOGGER.warning(
                            "Zeroconf: no network address to advertise yet; will advertise "
                            "once one appears (or set zeroconf.host)"
                        )
                    advertised = addresses
            if not self._follow:
                return
            await asyncio.sleep(self._interval)

    def _mdns_interfaces(self, addresses: Sequence[IPAddress]) -> tuple[InterfacesType, IPVersion]:
        """Where to send and answer mDNS: the bound addresses, or every interface."""
        bound = [item.address for item in self._listening]
        if bound and not any(address.is_unspecified for address in bound):
            versions = {address.version for address in bound}
            version = (
                IPVersion.All
                if len(versions) > 1
                else IPVersion.V6Only
                if versions == {6}
                else IPVersion.V4Only
            )
            return [str(address) for address in bound], version
        any_v6 = any(address.version == 6 for address in addresses)
        return InterfaceChoice.All, IPVersion.All if any_v6 else IPVersion.V4Only

    async def _advertise(self, addresses: Sequence[IPAddress], quiet: bool = False) -> bool:
        """Register the service at ``addresses``; False (logged) if that failed."""
        interfaces, version = self._mdns_interfaces(addresses)
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{self.requested_name}.{SERVICE_TYPE}",
            port=self.port,
            addresses=[a.packed for a in addresses],
            server=self._server_host,
            properties={},
        )
        try:
            self._aiozc = AsyncZeroconf(interfaces=interfaces, ip_version=version)
            self._info = info
            await self._aiozc.async_register_service(info, allow_name_change=True)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # any failure leaves the server serving
            log = _LOGGER.debug if quiet else _LOGGER.warning
            log("Zeroconf: cannot advertise %r: %r", self.requested_name, err)
            _LOGGER.debug("Zeroconf failure", exc_info=True)
            await self._withdraw()
            return False
        name = info.name.removesuffix("." + SERVICE_TYPE)
        if name != self.requested_name:
            _LOGGER.warning(
                "Zeroconf: the name %r is already taken on the network; advertising as %r",
                self.requested_name,
                name,
            )
        _LOGGER.info(
            "Zeroconf: advertising %r (%s) at %s port %d",
            name,
            SERVICE_TYPE,
            ", ".join(map(str, addresses)),
            self.port,
        )
        self._advertised.set()
        return True

    async def _withdraw(self) -> None:
        """Goodbye packets for what is registered (python-zeroconf's close sends them)."""
        aiozc, self._aiozc = self._aiozc, None
        was_advertised = self._advertised.is_set()
        self._advertised.clear()
        if aiozc is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await aiozc.async_close()
        except (TimeoutError, OSError) as err:
            _LOGGER.warning("Zeroconf: closing did not finish cleanly: %r", err)
        if was_advertised and self._info is not None:
            _LOGGER.info("Zeroconf: withdrew %r", self._info.name.removesuffix("." + SERVICE_TYPE))


def advertiser_for(
    settings: ZeroconfSettings, uri: str, sockets: Sequence[socket.socket]
) -> ZeroconfAdvertiser | None:
    """The advertiser ``settings`` ask for, or None (disabled, or not a ``tcp://`` URI).

    Args:
        settings: the ``zeroconf`` section.
        uri: the server's listening URI (only ``tcp://`` can be advertised).
        sockets: the server's listening sockets, once it listens (``asyncio.Server.sockets``).
    """
    if not settings.enabled or urlparse(uri).scheme != "tcp" or not sockets:
        if settings.enabled and urlparse(uri).scheme != "tcp":
            _LOGGER.debug("Zeroconf: not advertised (only tcp:// URIs can be)")
        return None
    return ZeroconfAdvertiser(
        name=settings.name or default_instance_name(),
        port=int(sockets[0].getsockname()[1]),
        listening=[ListenAddress.of_socket(sock) for sock in sockets],
        host=ip_address(settings.host) if settings.host else None,
    )
