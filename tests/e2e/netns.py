"""Another host on this machine: a network namespace joined to this one by a veth pair.

A browser started inside it reaches the server over a real interface with
addresses of its own, as a participant on another machine would, instead of over
loopback (which browsers pair differently, or not at all). Needs root and
iproute2; everything made here is removed again by `close`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Namespace:
    name: str
    host_address: str
    """This side's end of the veth pair, where the server listens."""
    inside_address: str
    """The namespace's own address."""

    @classmethod
    def create(cls, tag: str = "") -> Namespace:
        unique = f"{os.getpid() % 100000}{tag}"
        subnet = f"10.231.{os.getpid() % 250}"
        namespace = cls(f"confide-{unique}", f"{subnet}.1", f"{subnet}.2")
        outside, inside = f"cf{unique}h"[:15], f"cf{unique}n"[:15]
        namespace._links = (outside,)
        _ip("netns", "add", namespace.name)
        try:
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", namespace.name)
            _ip("addr", "add", f"{namespace.host_address}/24", "dev", outside)
            _ip("link", "set", outside, "up")
            namespace.run("ip", "addr", "add", f"{namespace.inside_address}/24", "dev", inside)
            namespace.run("ip", "link", "set", inside, "up")
            # The browser's driver talks to the browser over the namespace's own loopback.
            namespace.run("ip", "link", "set", "lo", "up")
        except BaseException:
            namespace.close()
            raise
        return namespace

    _links: tuple[str, ...] = ()

    @property
    def prefix(self) -> tuple[str, ...]:
        """What to put before a command to run it inside the namespace."""
        return ("ip", "netns", "exec", self.name)

    def run(self, *command: str) -> None:
        subprocess.run([*self.prefix, *command], check=True, capture_output=True)

    @contextmanager
    def blocking_udp_to(self, port: int) -> Iterator[None]:
        """While inside, this host's UDP to `port` is dropped, as by a firewall."""
        self.run("nft", "add", "table", "inet", "confide_block")
        self.run("nft", "add", "chain", "inet", "confide_block", "out",
                 "{ type filter hook output priority 0 ; }")
        self.run("nft", "add", "rule", "inet", "confide_block", "out",
                 "udp", "dport", str(port), "drop")
        try:
            yield
        finally:
            self.run("nft", "delete", "table", "inet", "confide_block")

    def close(self) -> None:
        for link in self._links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
