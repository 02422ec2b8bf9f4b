"""Hosts for the cluster test: network namespaces on a bridge, made and removed here.

Each host is a namespace with its loopback and one veth to a bridge in the test's own
namespace, with an address of a private /24 that exists only inside this sandbox. A
host is cut off by taking its veth down (its processes go on running and see nothing:
the silent cut), and brought back by setting it up again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def available() -> str | None:
    """Why namespaces cannot be made here (not root, no ``ip``), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        subprocess.run(["ip", "netns", "list"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as error:
        return f"no ip netns: {error}"
    return None


@dataclass
class Host:
    """One namespace: its name, its address, and the veth end in the test's namespace."""

    name: str
    address: str
    outside: str

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run inside this host."""
        return ["ip", "netns", "exec", self.name, *command]


def _free_subnet() -> int:
    """A ``10.<n>.0.0/24`` no interface of this host is on (another sandbox's, say)."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    for n in range(100, 200):
        if f" 10.{n}.0." not in used:
            return n
    raise RuntimeError("no free 10.x.0.0/24 for the sandbox")


@dataclass
class Sandbox:
    """A bridge and its hosts, on a ``10.<n>.0.0/24`` of their own."""

    subnet: int = field(default_factory=_free_subnet)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:4])
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        """The bridge's name."""
        return f"bo{self.tag}br"

    @property
    def gateway(self) -> str:
        """The test's own address on the bridge."""
        return f"10.{self.subnet}.0.1"

    def create(self, names: Sequence[str]) -> None:
        """The bridge and one host per name, addresses .10, .11, …"""
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for n, name in enumerate(names):
            namespace = f"bo{self.tag}{name}"
            outside, inside = f"bo{self.tag}{n}o", f"bo{self.tag}{n}i"
            address = f"10.{self.subnet}.0.{10 + n}"
            _ip("netns", "add", namespace)
            _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", namespace)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            _ip("netns", "exec", namespace, "ip", "addr", "add", f"{address}/24", "dev", inside)
            _ip("netns", "exec", namespace, "ip", "link", "set", inside, "up")
            self.hosts[name] = Host(namespace, address, outside)

    def cut(self, name: str) -> None:
        """Cut ``name`` off the network, silently: its processes go on."""
        _ip("link", "set", self.hosts[name].outside, "down")

    def restore(self, name: str) -> None:
        """Put ``name`` back on the network."""
        _ip("link", "set", self.hosts[name].outside, "up")

    def kill_all(self, name: str) -> list[int]:
        """SIGKILL every process in ``name``: the host is lost."""
        found = subprocess.run(
            ["ip", "netns", "pids", self.hosts[name].name], capture_output=True, text=True
        ).stdout.split()
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        return [int(p) for p in found]

    def remove(self) -> None:
        """Every process in the hosts killed, the hosts and the bridge removed."""
        for name, host in self.hosts.items():
            self.kill_all(name)
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True)
            subprocess.run(["ip", "link", "del", host.outside], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self.hosts.clear()
