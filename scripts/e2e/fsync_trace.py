#!/usr/bin/env python3
"""Proves the acknowledgement contract with a syscall trace: no put is answered before an
fdatasync of the WAL.

A SIGKILL test cannot catch a missing fsync (the page cache survives the process), so this test
watches the syscalls instead. Lattice runs under `strace -f`; one client sends N sequential puts
on one connection (each waits for the previous answer). In the trace, every response the server
writes to the client's socket must come after an fdatasync that happened since the previous
response: N responses need N separate fdatasyncs in between them.

A negative control runs the same with `--unsafe-no-fsync` and must FAIL the same check, showing
the check can fail.

Prints `N passed, M failed` (2 checks).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from differential import find_etcd_binary, free_ports  # noqa: E402

SYSCALL = re.compile(r"^(\d+)\s+(\S+)\s+(\w+)\((\d+)")
RESULT = re.compile(r"=\s+(\d+)$")
# HTTP/2 control frames the server writes on its own (SETTINGS ack 9 bytes, WINDOW_UPDATE 13,
# PING ack 17) are not responses; a gRPC response (HEADERS, DATA, trailers) is far larger.
CONTROL_FRAME_MAX = 24


def run_traced(lattice: str, puts: int, extra: list[str]) -> tuple[int, int, int]:
    """Returns (fdatasync count, responses preceded by their own fdatasync, socket writes)."""
    work = Path(tempfile.mkdtemp(prefix="lattice-trace-"))
    (port,) = free_ports(1)
    endpoint = f"127.0.0.1:{port}"
    trace = work / "trace.txt"
    argv = ["strace", "-f", "-tt", "-e", "trace=fdatasync,fsync,write,writev,sendmsg", "-o", str(trace),
            lattice, "--data-dir", str(work / "data"), "--listen-client-urls", f"http://{endpoint}",
            "--advertise-client-urls", f"http://{endpoint}", *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        etcdctl = find_etcd_binary("etcdctl")
        deadline = time.monotonic() + 60
        while subprocess.run([etcdctl, f"--endpoints={endpoint}", "get", "probe"], capture_output=True,
                             env={**os.environ, "ETCDCTL_API": "3"}).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("lattice under strace did not become ready")
            time.sleep(0.1)
        mark = trace.stat().st_size
        r = subprocess.run([lattice, "bench", "put", "--endpoints", endpoint, "--clients", "1", "--conns", "1",
                            "--total", str(puts), "--json"], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"bench failed: {r.stderr}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = trace.read_bytes()[mark:].decode(errors="replace").splitlines()
    shutil.rmtree(work, ignore_errors=True)
    # The client's connection is the socket the server writes most to during the run.
    writes: dict[int, int] = {}
    events: list[tuple[str, int]] = []
    for line in lines:
        m = SYSCALL.match(line)
        if not m or "resumed" in line:
            continue
        name, fd = m.group(3), int(m.group(4))
        if name in ("fdatasync", "fsync"):
            events.append(("sync", fd))
        elif name in ("write", "writev", "sendmsg"):
            size = RESULT.search(line.rstrip())
            if size and int(size.group(1)) <= CONTROL_FRAME_MAX:
                # A control frame written between a sync and the response it covers (e.g. a
                # WINDOW_UPDATE flushed late on a busy machine) is not a response.
                continue
            events.append(("write", fd))
            writes[fd] = writes.get(fd, 0) + 1
    if not writes:
        return 0, 0, 0
    client_fd = max(writes, key=writes.get)
    syncs = sum(1 for kind, _ in events if kind == "sync")
    covered = 0
    synced_since_last_write = False
    for kind, fd in events:
        if kind == "sync":
            synced_since_last_write = True
        elif fd == client_fd:
            if synced_since_last_write:
                covered += 1
            synced_since_last_write = False
    return syncs, covered, writes[client_fd]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lattice-bin", required=True)
    ap.add_argument("--puts", type=int, default=200)
    args = ap.parse_args()
    if shutil.which("strace") is None:
        print("strace is not installed (apt-get install strace)")
        print("0 passed, 1 failed")
        return 1
    passed = failed = 0
    syncs, covered, socket_writes = run_traced(args.lattice_bin, args.puts, [])
    ok = syncs >= args.puts and covered >= args.puts
    print(f"{'ok  ' if ok else 'FAIL'} durable: {args.puts} sequential puts, {syncs} fdatasyncs, "
          f"{covered} of {socket_writes} response writes preceded by their own fdatasync")
    passed, failed = passed + ok, failed + (not ok)
    syncs, covered, socket_writes = run_traced(args.lattice_bin, args.puts, ["--unsafe-no-fsync"])
    control_detects = not (syncs >= args.puts and covered >= args.puts)
    print(f"{'ok  ' if control_detects else 'FAIL'} negative control (--unsafe-no-fsync) is caught: {syncs} fdatasyncs, "
          f"{covered} covered response writes")
    passed, failed = passed + control_detects, failed + (not control_detects)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
