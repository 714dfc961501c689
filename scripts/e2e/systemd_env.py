#!/usr/bin/env python3
"""systemd and etcd's environment, with the real binary.

  * `Type=notify`: with $NOTIFY_SOCKET set, lattice sends READY=1 once it serves, WATCHDOG=1
    at half of $WATCHDOG_USEC, and STOPPING=1 on SIGTERM, then exits 0.
  * `ETCD_<FLAG>` variables configure it like the flags (here the client URL and the name),
    and a flag on the command line wins over its variable, with etcd's warning.
  * `--config-file` (etcd's YAML) replaces flags and variables; logs are etcd's JSON lines on
    every `log-outputs` target.

Prints "N passed, M failed".
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from differential import find_etcd_binary, free_ports  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lattice-bin", default=".build/release/lattice")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lattice-systemd-"))
    notify_path = str(work / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.settimeout(0.2)
    (port,) = free_ports(1)
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "400000",
           "ETCD_LISTEN_CLIENT_URLS": f"http://127.0.0.1:{port}", "ETCD_NAME": "from-env",
           "ETCD_DATA_DIR": str(work / "env.lattice")}
    proc = subprocess.Popen([args.lattice_bin, "--data-dir", str(work / "flag.lattice"), "--log-level", "warn"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    passed = failed = 0

    def check(ok: bool, what: str) -> None:
        nonlocal passed, failed
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)

    def receive(until: str, seconds: float) -> list[str]:
        got: list[str] = []
        deadline = time.time() + seconds
        while time.time() < deadline and until not in got:
            try:
                got.append(sock.recv(256).decode())
            except socket.timeout:
                pass
        return got

    try:
        got = receive("READY=1", 30)
        check("READY=1" in got, "READY=1 once serving")
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        check(True, f"listening on ETCD_LISTEN_CLIENT_URLS (port {port})")
        check((work / "flag.lattice").is_dir() and not (work / "env.lattice").exists(),
              "--data-dir on the command line wins over ETCD_DATA_DIR")
        got = receive("WATCHDOG=1", 5)
        check("WATCHDOG=1" in got, "WATCHDOG=1 at half of WATCHDOG_USEC")
        proc.send_signal(signal.SIGTERM)
        got = receive("STOPPING=1", 15)
        check("STOPPING=1" in got, "STOPPING=1 on SIGTERM")
        code = proc.wait(timeout=30)
        check(code == 0, f"exit status 0 after SIGTERM (got {code})")
        stderr = proc.stderr.read().decode()
        check("recognized environment variable ETCD_DATA_DIR, but unused: shadowed by corresponding flag" in stderr,
              "warning for a variable shadowed by its flag")
        # --config-file (etcd's YAML) replaces the flags and the variables, with warnings.
        (cport,) = free_ports(1)
        config = work / "lattice.conf.yml"
        config.write_text(f"""# etcd's configuration file format
name: 'from-config'
data-dir: {work / 'config.lattice'}
listen-client-urls: http://127.0.0.1:{cport}
advertise-client-urls: http://127.0.0.1:{cport}
heartbeat-interval: 100
logger: zap
log-outputs: [stderr, {work / 'lattice.log'}]
client-transport-security:
  client-cert-auth: false
""")
        proc = subprocess.Popen([args.lattice_bin, "--config-file", str(config), "--name", "from-flag"],
                                env={**os.environ, "ETCD_NAME": "from-env"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        etcdctl = find_etcd_binary("etcdctl")
        listed = ""
        deadline = time.time() + 30
        while time.time() < deadline and "from-config" not in listed:
            r = subprocess.run([etcdctl, f"--endpoints=127.0.0.1:{cport}", "--dial-timeout=2s", "member", "list"],
                               capture_output=True, text=True, timeout=30)
            listed = r.stdout
            if "from-config" not in listed:
                time.sleep(0.2)
        check("from-config" in listed and (work / "config.lattice").is_dir(),
              "--config-file: name, data-dir and client URL from the YAML file")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        stderr = proc.stderr.read().decode()
        check("--name is ignored: --config-file" in stderr, "a flag given beside --config-file is reported as ignored")
        check("heartbeat-interval has no effect in Lattice" in stderr, "a key without effect in Lattice is reported")
        # Logs are etcd's JSON lines, on every output given.
        try:
            records = [json.loads(line) for line in (work / "lattice.log").read_text().splitlines()]
        except (OSError, json.JSONDecodeError):
            records = []
        ready = [r for r in records if r.get("msg") == "ready to serve client requests"]
        check(bool(ready) and all(set(r) >= {"level", "ts", "caller", "msg"} for r in records)
              and ready[0].get("name") == "from-config" and ready[0].get("level") == "info",
              f"log-outputs: the log file holds etcd-shaped JSON lines ({len(records)} records)")
        check('"msg":"ready to serve client requests"' in stderr, "and stderr gets the same lines")
        r = subprocess.run([args.lattice_bin, "--log-outputs", str(work / "missing" / "x.log"), "--data-dir", str(work / "x")],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 1 and "couldn't open sink" in r.stderr, "an unopenable log output fails start-up with etcd's message")
        bad = work / "bad.yml"
        bad.write_text("wal-dir: /elsewhere\n")
        r = subprocess.run([args.lattice_bin, "--config-file", str(bad)], capture_output=True, text=True, timeout=30)
        check(r.returncode == 1 and "wal-dir" in r.stderr, "a configuration key Lattice cannot honour is refused (exit 1)")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
        subprocess.run(["rm", "-rf", str(work)])
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
