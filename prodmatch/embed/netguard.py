"""Decide which network addresses an image download may connect to, so a catalogue cannot reach internal hosts.

``images.py`` asks :func:`resolve_host` for the one address it will connect to (the host is resolved once and that
address is pinned, so a DNS answer that changes between check and connect, "DNS rebinding", cannot slip past) and
calls it again for every redirect hop. By default only globally routable unicast addresses pass: loopback,
private (RFC 1918, CGNAT 100.64/10, fc00::/7), link-local, multicast, unspecified, reserved and documentation
ranges are refused, including IPv4 addresses hidden inside IPv6 ones (::ffff:127.0.0.1, 6to4, NAT64, Teredo).
Host names written as numbers in a non-standard form ("2130706433", "0177.0.0.1", "0x7f000001"), which C
resolvers read as IPv4 addresses, are refused before any lookup. An :class:`AllowList` lets a company whose image
CDN is internal open named networks or hosts; :func:`parse_allow_list` reads the ``PRODMATCH_IMAGE_ALLOW``
format ("10.1.0.0/16, cdn.internal"). Nothing here opens a connection.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from prodmatch.errors import ConfigError, ImageError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Environment variable naming the allow-list (read by config.py): comma-separated networks and host names.
ENV_IMAGE_ALLOW = "PRODMATCH_IMAGE_ALLOW"

# Ranges refused on top of what `ipaddress` already calls non-global; some are "global" in Python's tables.
_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and broadcast
        "64:ff9b:1::/48",  # local-use NAT64
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
# Numbers that inet_aton() accepts as IPv4: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x...).
_NUMERIC_HOST = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]*|[0-9]+)){0,3}\.?")


@dataclass(frozen=True)
class AllowList:
    """Networks and host names a download may reach although they are not public (an internal image CDN)."""

    networks: tuple[str, ...] = ()  # CIDR blocks or single addresses: "10.1.0.0/16", "fd00::/8", "127.0.0.1"
    hosts: tuple[str, ...] = ()  # host names, case-insensitive; "*.cdn.internal" also matches subdomains

    def __post_init__(self) -> None:
        _networks(self.networks)  # fail early on a typo, not at the first download

    def allows_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for pattern in self.hosts:
            pattern = pattern.lower().rstrip(".")
            if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
                return True
        return False

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in network for network in _networks(self.networks))


def parse_allow_list(text: str) -> AllowList:
    """Read an allow-list written as "10.1.0.0/16, cdn.internal, *.img.corp" (the PRODMATCH_IMAGE_ALLOW format)."""
    networks, hosts = [], []
    for item in (part.strip() for part in text.replace(";", ",").split(",")):
        if not item:
            continue
        try:
            ipaddress.ip_network(item, strict=False)
            networks.append(item)
        except ValueError:
            if not re.fullmatch(r"(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?", item):
                raise ConfigError(
                    f"{ENV_IMAGE_ALLOW}: {item!r} is neither a network (10.1.0.0/16) nor a host name"
                ) from None
            hosts.append(item)
    return AllowList(tuple(networks), tuple(hosts))


def refusal(address: IPAddress) -> str | None:
    """Why `address` must not be connected to by default (e.g. "a loopback address"), or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in ipaddress.ip_network("64:ff9b::/96"):  # NAT64 to an IPv4 address
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = refusal(embedded)
            return f"{inner} inside an IPv6 address" if inner else None
        if address.teredo is not None:
            return "a Teredo tunnel address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in ipaddress.ip_network("100.64.0.0/10"):
        return "a carrier-grade NAT address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or any(address in network for network in _REFUSED):
        return "a reserved address"
    if not address.is_global:
        return "a non-public address"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The IP address a URL's host names literally, None for a host name; non-standard numeric forms raise."""
    try:
        return ipaddress.ip_address(
            host.split("%", 1)[0]
        )  # "fe80::1%eth0": the zone does not change the verdict
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        raise ImageError(
            f"host {host!r} is an IP address in a non-standard numeric form; write it as a dotted quad"
        )
    return None


def resolve_host(host: str, port: int, allow: AllowList | None = None) -> str:
    """Return the one IP address to connect to for `host`, or raise ImageError saying why the host is refused.

    A host name is resolved once; if any of its addresses is refused, the host is refused (a name that also
    points inside the network is not trusted to be served from outside it). Host names on the allow-list may
    resolve anywhere; other addresses pass if they are public or inside an allowed network.
    """
    allow = allow or AllowList()
    literal = literal_address(host)
    if literal is not None:
        _check(literal, host, allow, literal=True)
        return str(literal)
    if not host:
        raise ImageError("URL has no host")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:
        raise ImageError(f"host name {host!r} is not valid") from None
    addresses = list(dict.fromkeys(_address(info[4][0]) for info in infos))
    if not addresses:
        raise ImageError(f"host name {host!r} has no address")
    if not allow.allows_host(host):
        for address in addresses:
            _check(address, host, allow, literal=False)
    return str(addresses[0])


def _check(address: IPAddress, host: str, allow: AllowList, *, literal: bool) -> None:
    reason = refusal(address)
    if reason is not None and not allow.allows_address(address) and not allow.allows_host(host):
        # The resolved address itself is not shown: it would map internal host names for whoever reads errors.
        verb = "is" if literal else "resolves to"
        raise ImageError(
            f"host {host} {verb} {reason}; image downloads only reach public addresses "
            f"unless the network is allowed ({ENV_IMAGE_ALLOW})"
        )


def _address(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])


_network_cache: dict[tuple[str, ...], tuple[IPNetwork, ...]] = {}


def _networks(specs: Iterable[str]) -> tuple[IPNetwork, ...]:
    key = tuple(specs)
    cached = _network_cache.get(key)
    if cached is None:
        try:
            cached = tuple(ipaddress.ip_network(spec, strict=False) for spec in key)
        except ValueError as e:
            raise ConfigError(f"image allow-list: {e}") from None
        _network_cache[key] = cached
    return cached
