"""Zeroconf discovery as Home Assistant sees it: a real mDNS browser finds the server,
resolves its port and address, connects and gets ``info``; goodbye on SIGTERM; name
conflicts; ``--no-zeroconf``; and the choice of advertised addresses.

The multicast tests run in an :mod:`tests.mdns_lab` (loopback, else network namespaces)
and skip, with the reason, only where neither works. Tests that need two server hosts
(a name conflict) or a wildcard bind run in the namespace lab only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from ipaddress import ip_address
from pathlib import Path

import ifaddr
import pytest

from tests.mdns_lab import (
    LAB_ENV,
    SECOND_V4,
    SECOND_V6,
    SERVER_V4,
    SERVER_V6,
    BrowserProcess,
    MdnsLab,
    ServerProcess,
    loopback_multicast_reason,
    netns_reason,
    network_namespaces,
)
from wyoming_openai.config_sources import load_settings
from wyoming_openai.discovery import (
    MAX_INSTANCE_NAME_BYTES,
    VIRTUAL_INTERFACE_PREFIXES,
    ListenAddress,
    default_instance_name,
    reachable_addresses,
)

KEY = {"OPENAI_API_KEY": "sk-test-zeroconf"}


def unique_name(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def _netns_or_skip() -> Iterator[MdnsLab]:
    reason = netns_reason()
    if reason is not None:
        pytest.skip(reason)
    stack = contextlib.ExitStack()
    try:
        lab = stack.enter_context(network_namespaces())
    except RuntimeError as err:
        pytest.skip(f"cannot create network namespaces: {err}")
    with stack:
        yield lab


@pytest.fixture(scope="module")
def mdns_lab() -> Iterator[MdnsLab]:
    """Loopback multicast if it works, else network namespaces, else skip."""
    forced = os.environ.get(LAB_ENV, "")
    loopback = loopback_multicast_reason() if forced != "netns" else f"{LAB_ENV}=netns"
    if loopback is None:
        yield MdnsLab(kind="loopback", server_host="127.0.0.1", browser_interfaces=["127.0.0.1"])
        return
    namespaces = netns_reason() if forced != "loopback" else f"{LAB_ENV}=loopback"
    if namespaces is not None:
        pytest.skip(f"no multicast lab: {loopback}; {namespaces}")
    with _netns_or_skip() as lab:
        yield lab


@pytest.fixture(scope="module")
def netns_lab() -> Iterator[MdnsLab]:
    """Network namespaces (servers on two hosts, bound to the wildcard address), or skip."""
    with _netns_or_skip() as lab:
        yield lab


@pytest.fixture
async def browser(mdns_lab: MdnsLab) -> AsyncIterator[BrowserProcess]:
    running = await BrowserProcess.start(mdns_lab)
    try:
        yield running
    finally:
        await running.close()


@contextlib.asynccontextmanager
async def server_process(
    lab: MdnsLab, *args: str, host: str | None = None, second_host: bool = False
) -> AsyncIterator[ServerProcess]:
    """A server subprocess on the lab's server host (or its second one), killed on exit if
    still running."""
    prefix = lab.server_prefix
    if second_host:
        assert lab.second_server_prefix is not None, "a second host needs the netns lab"
        prefix = lab.second_server_prefix
    process = await ServerProcess.start(prefix, host or lab.server_host, *args)
    try:
        yield process
    finally:
        await process.kill()


def assert_home_assistant_would_add(event: dict, lab: MdnsLab) -> None:
    """What HA's config flow needs: a port, a reachable address, installed asr and tts."""
    assert "error" not in event, event
    assert event["port"] > 0
    assert event["connected_to"] in event["addresses"]
    assert not any(ip_address(a).is_unspecified for a in event["addresses"]), event
    if lab.kind == "loopback":
        assert event["addresses"] == ["127.0.0.1"]
    else:
        assert event["connected_to"] in lab.server_addresses
    assert event["programs"]["asr"] and event["programs"]["tts"], event


# --------------------------------------------------------------------------- over multicast


@pytest.mark.slow  # server subprocesses and multicast
async def test_discovered_described_and_withdrawn_on_sigterm(
    mdns_lab: MdnsLab, browser: BrowserProcess
) -> None:
    name = unique_name("kitchen")
    async with server_process(mdns_lab, "--zeroconf", name) as server:
        added = await browser.wait_for(lambda e: e.get("added") == name)
        assert_home_assistant_would_add(added, mdns_lab)

        started = time.monotonic()
        code = await server.terminate()
        elapsed = time.monotonic() - started
        removed = await browser.wait_for(lambda e: e.get("removed") == name)
    assert code == 0, server.text
    assert "Traceback" not in server.text, server.text
    assert removed == {"removed": name}
    print(f"[{mdns_lab.kind}] SIGTERM to exit: {elapsed * 1000:.0f} ms")


@pytest.mark.slow  # server subprocesses and multicast
async def test_no_zeroconf_advertises_nothing(mdns_lab: MdnsLab, browser: BrowserProcess) -> None:
    silent, control = unique_name("silent"), unique_name("control")
    async with (
        server_process(mdns_lab, "--no-zeroconf", "--zeroconf-name", silent) as quiet,
        server_process(mdns_lab, "--zeroconf", control),
    ):
        # The silent server listened first; by the time the control server (registered
        # later, with the same probing delays) is seen, anything it sent would be too.
        await browser.wait_for(lambda e: e.get("added") == control)
    assert silent not in browser.names_added()
    assert "Zeroconf: advertising" not in quiet.text


@pytest.mark.slow  # server subprocesses and multicast
async def test_name_conflict_gets_a_unique_name_and_is_logged(netns_lab: MdnsLab) -> None:
    """Two hosts ask for one name: the second to come is renamed. (On one host the probe's
    unicast answer may reach the wrong process: see :func:`tests.mdns_lab.network_namespaces`.)"""
    lab = netns_lab
    name = unique_name("living-room")
    browser = await BrowserProcess.start(lab)
    try:
        async with server_process(lab, "--zeroconf", name) as first:
            first_added = await browser.wait_for(lambda e: e.get("added") == name)
            async with server_process(lab, "--zeroconf", name, second_host=True) as second:
                renamed = await browser.wait_for(
                    lambda e: e.get("added", "").startswith(name) and e["added"] != name
                )
    finally:
        await browser.close()
    assert_home_assistant_would_add(first_added, lab)
    assert_home_assistant_would_add(renamed, lab)
    assert renamed["connected_to"] in (SECOND_V4, SECOND_V6)  # each name leads to its own host
    warning = [line for line in second.text.splitlines() if "already taken" in line]
    assert warning and name in warning[0] and renamed["added"] in warning[0], second.text
    assert "already taken" not in first.text


@pytest.mark.slow  # server subprocesses and multicast
@pytest.mark.parametrize("bind", ["0.0.0.0", "::"])
async def test_wildcard_bind_advertises_the_interface_address(
    netns_lab: MdnsLab, bind: str
) -> None:
    """Another host (namespace) gets the server's veth address, never the wildcard."""
    lab = netns_lab
    expected = SERVER_V4 if bind == "0.0.0.0" else SERVER_V6
    running = await BrowserProcess.start(lab)
    try:
        name = unique_name("wildcard")
        async with server_process(lab, "--zeroconf", name, host=bind):
            added = await running.wait_for(lambda e: e.get("added") == name)
    finally:
        await running.close()
    assert_home_assistant_would_add(added, lab)
    assert added["addresses"] == [expected]


# --------------------------------------------------------------------------- addresses


def _listening(host: str) -> ListenAddress:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        if family == socket.AF_INET6:  # as asyncio.start_server sets it
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, 0))
        sock.listen()
        return ListenAddress.of_socket(sock)


def _host_addresses(version: int) -> set[str]:
    """The host's addresses of ``version``, but loopback, link-local IPv6 and bridges."""
    found = set()
    for adapter in ifaddr.get_adapters():
        if adapter.name.startswith(VIRTUAL_INTERFACE_PREFIXES):
            continue
        for item in adapter.ips:
            address = ip_address(item.ip if isinstance(item.ip, str) else item.ip[0])
            link_local_v6 = address.version == 6 and address.is_link_local
            if address.version == version and not address.is_loopback and not link_local_v6:
                found.add(str(address))
    return found


def test_wildcard_ipv4_socket_gives_the_host_ipv4_addresses() -> None:
    listening = _listening("0.0.0.0")
    assert listening.address.is_unspecified
    addresses = {str(a) for a in reachable_addresses([listening])}
    assert addresses == _host_addresses(4)
    assert "0.0.0.0" not in addresses and "127.0.0.1" not in addresses


def test_wildcard_ipv6_only_socket_gives_ipv6_addresses_only() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    addresses = reachable_addresses([_listening("::")])
    assert {str(a) for a in addresses} == _host_addresses(6)
    assert all(a.version == 6 and not a.is_link_local for a in addresses)


def test_specific_address_is_advertised_as_is() -> None:
    assert [str(a) for a in reachable_addresses([_listening("127.0.0.1")])] == ["127.0.0.1"]


def _adapter(name: str, *ips: str) -> ifaddr.Adapter:
    entries = [
        ifaddr.IP((ip, 0, 0) if ":" in ip else ip, 64 if ":" in ip else 24, name) for ip in ips
    ]
    return ifaddr.Adapter(name, name, entries)


def test_bridges_loopback_and_link_local_are_left_out_and_primary_comes_first() -> None:
    adapters = [
        _adapter("lo", "127.0.0.1", "::1"),
        _adapter("docker0", "172.17.0.1"),
        _adapter("br-1a2b3c", "172.18.0.1"),
        _adapter("wlan0", "10.0.0.9"),
        _adapter("eth0", "192.168.1.20", "fe80::1", "2001:db8::20"),
    ]
    wildcard_v4 = ListenAddress(ip_address("0.0.0.0"))
    dual = ListenAddress(ip_address("::"), dual_stack=True)
    primary = ip_address("192.168.1.20")
    assert [str(a) for a in reachable_addresses([wildcard_v4], adapters, primary)] == [
        "192.168.1.20",
        "10.0.0.9",
    ]
    assert [str(a) for a in reachable_addresses([dual], adapters, primary)] == [
        "192.168.1.20",
        "10.0.0.9",
        "2001:db8::20",
    ]


def test_default_instance_name_is_stable_and_a_valid_label() -> None:
    assert default_instance_name("raspberrypi.lan") == "wyoming-openai-raspberrypi"
    assert default_instance_name("raspberrypi") == default_instance_name("raspberrypi")
    assert default_instance_name("localhost").startswith("wyoming-openai-")
    assert default_instance_name("localhost") != "wyoming-openai-localhost"
    assert len(default_instance_name("x" * 100).encode()) <= MAX_INSTANCE_NAME_BYTES


# --------------------------------------------------------------------------- settings


def test_zeroconf_flags_environment_and_config_file(tmp_path: Path) -> None:
    defaults = load_settings([], KEY).zeroconf
    assert defaults.enabled and defaults.name is None and defaults.host is None
    assert load_settings(["--zeroconf", "kitchen"], KEY).zeroconf.name == "kitchen"
    assert load_settings(["--no-zeroconf"], KEY).zeroconf.enabled is False
    env_off = {**KEY, "WYOMING_OPENAI_ZEROCONF_ENABLED": "false"}
    assert load_settings([], env_off).zeroconf.enabled is False
    assert load_settings(["--zeroconf"], env_off).zeroconf.enabled is True  # flag beats env
    config = tmp_path / "config.yaml"
    config.write_text("zeroconf:\n  name: attic\n  host: 192.168.1.5\n")
    from_file = load_settings(["--config", str(config)], KEY).zeroconf
    assert (from_file.name, from_file.host) == ("attic", "192.168.1.5")
    env_host = {**KEY, "WYOMING_OPENAI_ZEROCONF_HOST": "fd00::5"}
    assert load_settings(["--zeroconf-host", "10.0.0.2"], env_host).zeroconf.host == "10.0.0.2"
