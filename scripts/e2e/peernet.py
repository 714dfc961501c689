"""TCP proxies in front of cluster members' peer ports, controlled by a test or benchmark.

Each member listens for peers on its own loopback address (`Network.address(i)`) and dials its
peers from that address, so a proxy knows every connection's source member. The `Network` can
cut a member off in both directions (its own outgoing connections too), split the members in two,
and delay every byte by a fixed time one way (each direction of each connection is a queue:
bytes leave `delay` seconds after they arrived, in order, without limiting the bandwidth).
"""

from __future__ import annotations

import collections
import socket
import threading
import time


class Proxy:
    """A TCP proxy in front of one member's peer port. `blocked(src)` decides per connection."""

    def __init__(self, listen_port: int, target: tuple[str, int], member: int, controller: "Network") -> None:
        self.target = target
        self.member = member
        self.net = controller
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", listen_port))
        self.sock.listen(64)
        self.conns: list[tuple[socket.socket, socket.socket, int]] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self) -> None:
        while not self.closed:
            try:
                client, addr = self.sock.accept()
            except OSError:
                return
            src = self.net.member_of(addr[0])
            if self.net.is_blocked(src, self.member):
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns.append((client, upstream, src))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    def pipe(self, a: socket.socket, b: socket.socket) -> None:
        """Reads from `a`; a sender thread writes to `b` once each chunk's delay has passed."""
        queue: collections.deque[tuple[float, bytes]] = collections.deque()
        ready = threading.Condition()
        holding = [False]  # the sender took a chunk from the queue and has not sent it yet

        def send() -> None:
            try:
                while True:
                    with ready:
                        while not queue:
                            ready.wait()
                        due, data = queue.popleft()
                        holding[0] = True
                    if not data:
                        break
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)  # the chunk's one-way delay, not a wait for a condition
                    b.sendall(data)
                    with ready:
                        holding[0] = False
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            while True:
                data = a.recv(262144)
                with ready:
                    # Without a delay and with nothing queued, the reader sends the chunk itself:
                    # one thread hand-off less per chunk (the proxy's CPU is shared with the
                    # servers it measures). Order is kept: nothing else is on its way.
                    direct = bool(data) and self.net.delay == 0 and not queue and not holding[0]
                    if not direct:
                        queue.append((time.monotonic() + self.net.delay, data))
                        ready.notify()
                if direct:
                    b.sendall(data)
                if not data:
                    break
        except OSError:
            with ready:
                queue.append((0.0, b""))
                ready.notify()

    def cut(self) -> None:
        """Drops every connection that is now blocked."""
        with self.lock:
            keep = []
            for c, u, src in self.conns:
                if self.net.is_blocked(src, self.member):
                    for s in (c, u):
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                            s.close()
                        except OSError:
                            pass
                else:
                    keep.append((c, u, src))
            self.conns = keep

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        with self.lock:
            for c, u, _ in self.conns:
                for s in (c, u):
                    try:
                        s.close()
                    except OSError:
                        pass


class Network:
    def __init__(self, n: int) -> None:
        self.n = n
        self.blocked: set[tuple[int, int]] = set()
        self.delay = 0.0
        self.proxies: list[Proxy] = []

    @staticmethod
    def address(i: int) -> str:
        return f"127.0.0.{11 + i}"

    def member_of(self, ip: str) -> int:
        parts = ip.split(".")
        return int(parts[3]) - 11 if len(parts) == 4 else -1

    def is_blocked(self, src: int, dst: int) -> bool:
        return (src, dst) in self.blocked or (dst, src) in self.blocked

    def isolate(self, i: int) -> None:
        self.blocked |= {(i, j) for j in range(self.n) if j != i}
        for p in self.proxies:
            p.cut()

    def cut_link(self, i: int, j: int) -> None:
        """Cuts the link between members i and j only (both directions); both keep their other links."""
        self.blocked |= {(i, j)}
        for p in self.proxies:
            p.cut()

    def partition(self, side: set[int]) -> None:
        self.blocked |= {(i, j) for i in side for j in range(self.n) if j not in side}
        for p in self.proxies:
            p.cut()

    def heal(self) -> None:
        self.blocked = set()
