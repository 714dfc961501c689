#!/usr/bin/env python3
"""Auth across members: two Lattice processes replicating, with JWT tokens and the real etcdctl.

Member a signs tokens (`--auth-token jwt,priv-key=…,pub-key=…`), member b holds the public key
only. Checks:
  * users, roles, grants and `auth enable` made on a reach b (replicated auth state);
  * a token a issued is accepted by b (same key), and b refuses to issue one ("verify-only");
  * a grant revoked on b denies the user on a; a password changed on b invalidates, on a,
    the token the user got before; a user deleted on b is refused on a.

Concurrent grants and revokes (revoke wins) are checked by the convergence simulation and the
AuthTable tests, which control message order.

Standard library, openssl and curl. Prints `N passed, M failed` last.
"""

from __future__ import annotations

import argparse
import json
import base64
import shutil
import signal
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
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    etcdctl = find_etcd_binary("etcdctl")
    work = Path(tempfile.mkdtemp(prefix="lattice-auth-cluster-"))
    passed = failed = 0

    def check(ok: bool, what: str, detail: str = "") -> None:
        nonlocal passed, failed
        print(f"{'ok  ' if ok else 'FAIL'} {what}{'' if ok or not detail else ': ' + detail.strip()[:300]}", flush=True)
        passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)

    subprocess.run(["openssl", "genrsa", "-out", str(work / "jwt.key"), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", str(work / "jwt.key"), "-pubout", "-out", str(work / "jwt.pub")],
                   check=True, capture_output=True)
    (c1, p1, c2, p2) = free_ports(4)
    cluster = f"a=http://127.0.0.1:{p1},b=http://127.0.0.1:{p2}"
    jwt = {"a": f"jwt,sign-method=RS256,priv-key={work / 'jwt.key'},pub-key={work / 'jwt.pub'}",
           "b": f"jwt,sign-method=RS256,pub-key={work / 'jwt.pub'}"}
    procs: dict[str, subprocess.Popen] = {}

    def start(name: str, client: int, peer: int) -> None:
        procs[name] = subprocess.Popen(
            [args.lattice_bin, "--name", name, "--data-dir", str(work / name),
             "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", cluster, "--initial-cluster-token", "auth-test", "--auth-token", jwt[name],
             "--bcrypt-cost", "4", "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=open(work / f"{name}.log", "w"))

    def ctl(port: int, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run([etcdctl, f"--endpoints=127.0.0.1:{port}", "--dial-timeout=3s", "--command-timeout=5s", *command],
                              capture_output=True, text=True, timeout=30)

    def gateway(port: int, path: str, body: dict, token: str | None = None) -> dict:
        headers = ["-H", f"Authorization: {token}"] if token else []
        r = subprocess.run(["curl", "-s", "-m", "5", f"http://127.0.0.1:{port}/v3/{path}", *headers, "-d", json.dumps(body)],
                           capture_output=True, text=True, timeout=30)
        try:
            return json.loads(r.stdout)
        except json.JSONDecodeError:
            return {"error": r.stdout + r.stderr}

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    def token(port: int, user: str, password: str) -> str | None:
        return gateway(port, "auth/authenticate", {"name": user, "password": password}).get("token")

    def eventually(predicate, seconds: float = 20) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return False

    def put_error(port: int, tok: str | None, key: str) -> str:
        return gateway(port, "kv/put", {"key": b64(key), "value": b64("v")}, tok).get("error", "")

    start("a", c1, p1)
    start("b", c2, p2)
    try:
        ready = eventually(lambda: ctl(c1, "put", "probe", "1").returncode == 0 and ctl(c2, "get", "probe").stdout.strip() != "", 60)
        check(ready, "two members serve and replicate")
        for command in (["user", "add", "root:rootpw"], ["role", "add", "root"], ["user", "grant-role", "root", "root"],
                        ["user", "add", "alice:alicepw"], ["role", "add", "app"],
                        ["role", "grant-permission", "app", "readwrite", "app/", "--prefix"],
                        ["user", "grant-role", "alice", "app"], ["auth", "enable"]):
            r = ctl(c1, *command)
            check(r.returncode == 0, f"on a: {' '.join(command)}", r.stderr)
        check(eventually(lambda: "user name is empty" in ctl(c2, "get", "probe").stderr),
              "auth enabled on a reaches b (a call without a token is refused there)")
        alice = token(c1, "alice", "alicepw")
        root = token(c1, "root", "rootpw")
        check(bool(alice) and bool(root), "a issues JWTs", str(alice))
        check(eventually(lambda: put_error(c2, alice, "app/x") == ""), "b accepts a's token for alice (same key, replicated grant)")
        check("permission denied" in put_error(c2, alice, "other"), "b denies alice outside her prefix")
        r = gateway(c2, "auth/authenticate", {"name": "alice", "password": "alicepw"})
        check(r.get("error") == "auth: token signing attempted with verify-only key", "b (public key only) does not issue tokens",
              json.dumps(r))
        r = ctl(c2, "--user", "root:rootpw", "get", "probe")
        check("verify-only key" in r.stderr, "etcdctl logging in on b hears why", r.stderr)

        # lattice cluster-status reads every member's whole keyspace hash: root only.
        def status(*extra: str) -> subprocess.CompletedProcess:
            return subprocess.run([args.lattice_bin, "cluster-status", "--endpoints", f"127.0.0.1:{c1}", *extra],
                                  capture_output=True, text=True, timeout=30)
        r = status()
        check(r.returncode != 0 and "user name is empty" in r.stdout, "cluster-status without a login is refused", r.stdout + r.stderr)
        r = status("--user", "alice:alicepw")
        check(r.returncode != 0 and "permission denied" in r.stdout, "cluster-status as a non-root user is refused", r.stdout + r.stderr)
        r = status("--user", "root:rootpw")
        check(r.returncode == 0 and '"state_hash":"' in r.stdout, "cluster-status as root answers", r.stdout + r.stderr)

        # Changes made on b take effect on a.
        r = gateway(c2, "auth/role/revoke", {"role": "app", "key": b64("app/"), "range_end": b64("app0")}, root)
        check("error" not in r, "on b, with a's root token: revoke app's grant", json.dumps(r))
        check(eventually(lambda: "permission denied" in put_error(c1, alice, "app/y")), "the revoke made on b denies alice on a")
        gateway(c2, "auth/role/grant", {"name": "app", "perm": {"permType": "READWRITE", "key": b64("app/"), "range_end": b64("app0")}}, root)
        check(eventually(lambda: put_error(c1, alice, "app/y") == ""), "granted again on b: alice writes on a")
        r = gateway(c2, "auth/user/changepw", {"name": "alice", "password": "newpw"}, root)
        check("error" not in r, "on b: change alice's password", json.dumps(r))
        check(eventually(lambda: "invalid auth token" in put_error(c1, alice, "app/z")),
              "a refuses the token alice got before her password changed on b")
        fresh = token(c1, "alice", "newpw")
        check(bool(fresh) and put_error(c1, fresh, "app/z") == "", "alice logs in on a with the new password")
        gateway(c2, "auth/user/delete", {"name": "alice"}, root)
        check(eventually(lambda: "invalid auth token" in put_error(c1, fresh, "app/z")), "a user deleted on b: her token is refused on a")

    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if failed:
        print(f"logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
