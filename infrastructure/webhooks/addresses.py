"""Who webhooks may reach, and one POST to the address that was checked."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit


class RefusedAddressError(Exception):
    """Raised when a callback URL's host is, or resolves to, an address not allowed."""


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses webhooks may reach: global ones, and the allow-listed networks."""

    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def allowing(cls, networks: Sequence[str]) -> AddressPolicy:
        """A policy that also allows ``networks`` (CIDRs)."""
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def permits(self, address: str) -> bool:
        """Whether ``address`` (an IP) may be reached."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_global or any(ip in network for network in self.allowed)

    def check_host(self, host: str) -> None:
        """Refuse a host that is visibly local: ``localhost`` or a literal address not
        permitted. Other names are checked when they are resolved, at delivery."""
        if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
            if not self.permits("127.0.0.1"):
                raise RefusedAddressError(f"{host} is this machine")
            return
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return
        if not self.permits(host):
            raise RefusedAddressError(f"{host} is not a public address")

    def resolve(self, host: str, port: int) -> str:
        """The address to connect to for ``host``; every address it resolves to must be
        permitted, so that a name cannot mix a public address with an inside one."""
        self.check_host(host)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise OSError(f"cannot resolve {host}: {error}") from error
        addresses = [str(info[4][0]) for info in infos]
        refused = [a for a in addresses if not self.permits(a)]
        if refused:
            raise RefusedAddressError(f"{host} resolves to {refused[0]}, not a public address")
        return addresses[0]


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to ``address``, whatever its host name resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """An HTTPS connection to ``address``, verifying the certificate of ``host``."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.tls = ssl.create_default_context()

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


@dataclass(frozen=True)
class CallbackUrlPolicy:
    """The :class:`~application.ports.CallbackPolicy` of this service: webhooks on (a
    secret is set), an absolute http(s) URL, and a host not visibly local."""

    enabled: bool
    addresses: AddressPolicy

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not receive webhooks, or None when it may."""
        parts = urlsplit(url)
        if not self.enabled:
            return "webhooks are not enabled on this service (WEBHOOK_SECRET is not set)"
        if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
            return "must be an absolute http(s) URL of at most 2048 characters"
        try:
            self.addresses.check_host(parts.hostname)
        except RefusedAddressError as error:
            return f"must be a public address: {error}"
        return None


def post(
    url: str, body: bytes, headers: dict[str, str], policy: AddressPolicy, timeout: float
) -> int:
    """POST ``body`` to ``url`` once; returns the status (a redirect is just a status).

    Raises :class:`RefusedAddressError` for an address not permitted, ``OSError`` when
    the receiver cannot be reached or does not answer within ``timeout`` s.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = policy.resolve(host, port)
    connection_class = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = connection_class(host, port, address, timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read(65536)  # what a receiver says is not kept
        return int(response.status)
    except http.client.HTTPException as error:
        raise OSError(f"bad answer: {error!r}") from error
    finally:
        connection.close()


def destination_of(url: str) -> str:
    """The receiver a URL reaches (scheme, host, port): deliveries are bounded by it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"
