#!/usr/bin/env python3
"""Sustained load from etcd's Go client on ONE connection, counting reconnects.

etcdctl's `make-mirror` copies every key of a source cluster into a destination with one
sequential `Put` per key, all on a single gRPC connection (grpc-go, with its BDP pings and
keepalive). Source: a real etcd 3.5.1, preloaded with N keys. Destination: Lattice.

Passes when
  * every key arrives in Lattice with its exact value,
  * Lattice's revision is exactly 1 + N (no put was applied twice by a client retry),
  * Lattice accepted exactly one connection on the mirror's port (no GOAWAY/reconnect),
  * etcdctl logged no retried or failed call.

Lattice listens on two ports: the mirror uses one, this script's checks use the other, so the
connection count on the mirror's port is the mirror's alone.

With --auth, auth is enabled in Lattice before the mirror starts, and the mirror writes as a
user granted read-write on the mirrored prefix only: by password (`--dest-user`), with a
one-second token TTL, and the mirror is paused (SIGSTOP) three times for longer than that, so
its token expires and etcd's Go client must log in again and retry the put; with --tls too, by
its certificate's common name and no password. Extra checks: the client logged in again after
each pause, and it logged nothing but those token refreshes.

With --tls the mirror's port is https:// with client-certificate authentication: certificates
are made here by openssl (a CA, a server certificate for 127.0.0.1, a client certificate), and
the mirror connects with etcdctl's --dest-cacert/--dest-cert/--dest-key; the checks are the
same.

Standard library only. Prints `N passed, M failed` (checks) last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from differential import find_etcd_binary, free_ports  # noqa: E402
from tls import make_ca, make_cert  # noqa: E402


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def ctl(etcdctl: str, endpoint: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([etcdctl, f"--endpoints={endpoint}", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "ETCDCTL_API": "3"})


def header_revision(etcdctl: str, endpoint: str, *auth: str) -> int:
    out = ctl(etcdctl, endpoint, *auth, "get", "probe", "-w", "fields").stdout
    return int(re.search(r'"Revision" : (\d+)', out).group(1))


def key_count(etcdctl: str, endpoint: str, prefix: str, *auth: str) -> int:
    out = ctl(etcdctl, endpoint, *auth, "get", prefix, "--prefix", "--count-only", "-w", "fields").stdout
    m = re.search(r'"Count" : (\d+)', out)
    return int(m.group(1)) if m else -1


def metric_sum(etcdctl: str, endpoint: str, *labels: str) -> int:
    """The sum of grpc_server_handled_total over the series carrying every one of `labels`."""
    import urllib.request
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as response:
        text = response.read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("grpc_server_handled_total{") and all(label in line for label in labels)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lattice-bin", required=True)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--timeout", type=float, default=900, help="seconds for the whole mirror")
    ap.add_argument("--tls", action="store_true", help="the mirror connects over TLS with a client certificate")
    ap.add_argument("--auth", action="store_true", help="auth enabled; the mirror writes as a user with a prefix grant")
    args = ap.parse_args()
    # SIGTERM (e.g. from `timeout`) unwinds through `finally`, so started servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    etcd_bin, etcdctl = find_etcd_binary("etcd"), find_etcd_binary("etcdctl")
    tmp = Path(tempfile.mkdtemp(prefix="lattice-soak-"))
    procs: list[subprocess.Popen] = []

    def start(argv, log_name):
        log = open(tmp / log_name, "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    checks: list[tuple[str, bool, str]] = []
    try:
        etcd_port, etcd_peer, mirror_port, check_port = free_ports(4)
        etcd_ep = f"127.0.0.1:{etcd_port}"
        start([etcd_bin, "--data-dir", str(tmp / "etcd"), "--listen-client-urls", f"http://{etcd_ep}",
               "--advertise-client-urls", f"http://{etcd_ep}", "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
               "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
               "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}", "--unsafe-no-fsync"], "etcd.log")
        mirror_ep, check_ep = f"127.0.0.1:{mirror_port}", f"127.0.0.1:{check_port}"
        tls_server: list[str] = []
        tls_client: list[str] = []
        if args.tls:
            make_ca(tmp, "ca")
            make_cert(tmp, "ca", "server", "lattice", server=True)
            make_cert(tmp, "ca", "client", "mirror")
            tls_server = ["--cert-file", str(tmp / "server.crt"), "--key-file", str(tmp / "server.key"),
                          "--trusted-ca-file", str(tmp / "ca.crt"), "--client-cert-auth"]
            tls_client = [f"--dest-cacert={tmp / 'ca.crt'}", f"--dest-cert={tmp / 'client.crt'}", f"--dest-key={tmp / 'client.key'}"]
        scheme = "https" if args.tls else "http"
        auth_server = ["--auth-token-ttl", "1", "--bcrypt-cost", "4"] if args.auth else []
        start([args.lattice_bin, "--data-dir", str(tmp / "lattice"), "--log-level", "debug",
               "--listen-client-urls", f"{scheme}://{mirror_ep},http://{check_ep}",
               "--advertise-client-urls", f"http://{check_ep}", *tls_server, *auth_server], "lattice.log")
        for ep in (etcd_ep, check_ep):
            wait_until(lambda: ctl(etcdctl, ep, "get", "probe").returncode == 0, 60, f"{ep} to serve")
        root = ["--user", "root:rootpw"]
        if args.auth:
            for command in (["user", "add", "root:rootpw"], ["role", "add", "root"], ["user", "grant-role", "root", "root"],
                            ["user", "add", "mirror:mirrorpw"], ["role", "add", "mirror"],
                            ["role", "grant-permission", "mirror", "readwrite", "soak/", "--prefix"],
                            ["user", "grant-role", "mirror", "mirror"], ["auth", "enable"]):
                r = ctl(etcdctl, check_ep, *command)
                if r.returncode != 0:
                    raise RuntimeError(f"auth set-up {command} failed: {r.stderr}")
            # The mirror's user may not write elsewhere (the grant is what lets it write at all).
            r = ctl(etcdctl, check_ep, "--user", "mirror:mirrorpw", "put", "outside", "x")
            checks.append(("auth on: the mirror's user is denied outside its prefix", "permission denied" in r.stderr, r.stderr))
            if not args.tls:
                tls_client = ["--dest-user", "mirror:mirrorpw"]

        prefix = "soak/"
        t0 = time.monotonic()
        load = subprocess.run([args.lattice_bin, "bench", "put", "--endpoints", etcd_ep, "--conns", "4", "--clients", "32",
                               "--total", str(args.keys), "--key-space-size", str(args.keys), "--sequential-keys",
                               "--key-size", "12", "--val-size", "64", "--key-prefix", prefix],
                              capture_output=True, text=True, timeout=600)
        if load.returncode != 0:
            raise RuntimeError(f"loading etcd failed: {load.stderr}")
        loaded = key_count(etcdctl, etcd_ep, prefix)
        print(f"loaded {loaded} keys into etcd in {time.monotonic() - t0:.1f} s", flush=True)

        t1 = time.monotonic()
        mirror = start([etcdctl, f"--endpoints={etcd_ep}", "make-mirror", "--prefix", prefix, *tls_client, mirror_ep], "mirror.log")
        pauses = 0
        if args.auth and not args.tls:
            # Idle longer than the token TTL three times, spread over the copy: each time the
            # next put is refused ("invalid auth token") and the client logs in again.
            for fraction in (0.2, 0.45, 0.7):
                wait_until(lambda: key_count(etcdctl, check_ep, prefix, *root) >= loaded * fraction, args.timeout,
                           f"{fraction:.0%} of the keys", interval_s=0.5)
                mirror.send_signal(signal.SIGSTOP)
                time.sleep(2.5)  # the pause itself is the test: longer than the one-second TTL
                mirror.send_signal(signal.SIGCONT)
                pauses += 1
        wait_until(lambda: key_count(etcdctl, check_ep, prefix, *root) >= loaded, args.timeout, "the mirror to copy every key",
                   interval_s=1.0)
        elapsed = time.monotonic() - t1
        print(f"mirrored {loaded} keys over one Go-client {'TLS ' if args.tls else ''}connection in {elapsed:.1f} s "
              f"({loaded / elapsed:.0f} puts/s)", flush=True)
        mirror.send_signal(signal.SIGTERM)
        mirror.wait(timeout=10)

        if not args.auth:
            root = []
        revision = header_revision(etcdctl, check_ep, *root)
        mirrored = key_count(etcdctl, check_ep, prefix, *root)
        checks.append(("every key mirrored", loaded == args.keys and mirrored == args.keys,
                       f"etcd has {loaded}, Lattice has {mirrored}, expected {args.keys}"))
        checks.append(("no put applied twice (revision == 1 + keys)", revision == 1 + args.keys,
                       f"revision {revision}, expected {1 + args.keys}"))
        sample = ctl(etcdctl, check_ep, *root, "get", prefix, "--prefix", "--limit", "3", "--print-value-only").stdout.split()
        expected_value = "v" * 64
        checks.append(("values byte-exact", sample and all(v == expected_value for v in sample), f"sample {sample[:1]}"))
        records = []
        for line in (tmp / "lattice.log").read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        accepted = sum(1 for r in records if r.get("msg") == "accepted client connection"
                       and str(r.get("local", "")).endswith(f":{mirror_port}"))
        checks.append(("exactly one connection on the mirror's port (no reconnect)", accepted == 1,
                       f"{accepted} connections accepted on port {mirror_port}"))
        mirror_log = (tmp / "mirror.log").read_text()
        problems = [line for line in mirror_log.splitlines() if re.search(r"retrying|rpc error|Error:", line)]
        if pauses:
            logins = metric_sum(etcdctl, check_ep, 'grpc_method="Authenticate"', 'grpc_code="OK"')
            refused = sum(1 for line in problems if "invalid auth token" in line)
            checks.append(("the client logged in again after each pause", logins >= 1 + pauses and refused >= pauses,
                           f"{logins} logins, {refused} puts refused for an expired token, after {pauses} pauses"))
            problems = [line for line in problems if "invalid auth token" not in line]
        checks.append(("etcdctl logged no retry or error" + (" but token refreshes" if pauses else ""), not problems,
                       f"{len(problems)} retry/error lines: {problems[:2]}"))
    except Exception as exc:  # a failed step is a failed check, and the processes still stop
        checks.append(("run completed", False, str(exc)))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    failed = 0
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))
        failed += 0 if ok else 1
    if failed:
        print(f"logs kept in {tmp}")
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
